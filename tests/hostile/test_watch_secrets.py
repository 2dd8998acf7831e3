"""Item 8: webhook and Slack URLs are secrets; database and cache files are the owner's
alone; SMTP verifies TLS and never sends a password in plaintext by default; the registry
cache never pairs an old body with a new ETag."""

from __future__ import annotations

import base64
import json
import logging
import os
import socketserver
import sqlite3
import ssl
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from chainwatch.cli import app
from chainwatch.db import connect, default_url
from chainwatch.errors import UsageError
from chainwatch.registry import cache as cache_module
from chainwatch.registry.cache import Cache
from chainwatch.watch.redact import sink_id
from chainwatch.watch.sinks import DeliveryError, SlackSink, SmtpSink, WebhookSink
from chainwatch.watch.state import WatchState, deliveries
from chainwatch.watch.watcher import WatchConfig, Watcher
from tests.helpers import BENIGN_INDEX, FIXTURES, clipper_source
from tests.unit.test_watch import T0, Clock, Recorder, Registry, make_watcher

HOOK = "https://hooks.example.invalid/T00000/B00000/hook-s3cr3t-token"
SLACK = "https://hooks.slack.invalid/services/T11111/B11111/slack-s3cr3t-token"
TOKENS = ("hook-s3cr3t-token", "slack-s3cr3t-token")
CERT = FIXTURES / "tls" / "test-only-cert.pem"
KEY = FIXTURES / "tls" / "test-only-key.pem"


def leaks(text: str) -> list[str]:
    return [t for t in TOKENS if t in text]


def database_text(path: Path) -> str:
    with sqlite3.connect(path) as db:
        return "\n".join(db.iterdump())


class FlakyReceiver:
    """Fails with an error quoting the URL, then with a 500, then accepts."""

    def __init__(self) -> None:
        self.answers = ["refuse", "500"]
        self.got: list[dict[str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if self.answers:
            kind = self.answers.pop(0)
            if kind == "refuse":
                raise httpx.ConnectError(f"cannot reach {request.url}", request=request)
            return httpx.Response(500, text=f"no such hook {request.url}")
        self.got.append(json.loads(request.content))
        return httpx.Response(200)


def test_webhook_urls_stay_out_of_logs_errors_and_the_database(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "chainwatch"):  # an in-process CLI run earlier may have quietened them
        caplog.set_level(logging.DEBUG, logger=name)
    registry, recorder, clock = Registry(), Recorder(), Clock()
    registry.publish("left-padder", "1.0.0", BENIGN_INDEX, T0 - 90 * 86400)
    watcher = make_watcher(tmp_path, registry, recorder, clock)
    hook, slack = FlakyReceiver(), FlakyReceiver()
    sinks = [WebhookSink(HOOK, transport=httpx.MockTransport(hook)),
             SlackSink(SLACK, transport=httpx.MockTransport(slack))]
    watcher.sinks = {s.name: s for s in sinks}
    watcher.watch(["left-padder"], hot=set())
    watcher.run_once()
    registry.publish("left-padder", "1.0.1", clipper_source(), T0 + 10)
    errors = []
    for _ in range(3):  # refused, 500, accepted
        clock.now += 1000
        watcher.run_once()
        dump = database_text(tmp_path / "watch.db")
        errors.append("ConnectError" in dump or "HTTP 500" in dump)
        assert leaks(dump) == []
    assert errors == [True, True, False]  # the failures were stored, then cleared
    assert len(hook.got) == 1 and len(slack.got) == 1
    assert [s.name for s in sinks] == [sink_id("webhook", HOOK), sink_id("slack", SLACK)]
    assert sinks[0].name.startswith("webhook:hooks.example.invalid#")
    assert HOOK not in repr(sinks[0])
    logged = [r.getMessage() + (r.exc_text or "") for r in caplog.records]
    assert any("HTTP Request: POST" in m for m in logged)  # httpx's own request log ...
    assert any("failed" in m and sinks[0].name in m for m in logged)  # ... and the failures
    assert leaks("\n".join(logged)) == []
    dump = database_text(tmp_path / "watch.db")
    assert sinks[0].name in dump and sinks[1].name in dump
    assert leaks(dump) == []


def test_the_startup_log_names_sinks_by_id(tmp_path: Path) -> None:
    (tmp_path / "list.txt").write_text("left-padder\n")
    result = CliRunner(env={"CHAINWATCH_SLACK": SLACK}).invoke(app, [
        "watch", "--once", "--packages", str(tmp_path / "list.txt"), "--webhook", HOOK,
        "--db", f"sqlite:///{tmp_path / 'w.db'}", "--cache-dir", str(tmp_path / "cache"),
        "--registry", "http://127.0.0.1:9/", "-v"])
    everything = result.output + (result.stderr if result.stderr_bytes is not None else "")
    assert sink_id("webhook", HOOK) in everything and sink_id("slack", SLACK) in everything
    assert "poll left-padder failed" in everything  # the run went on past startup
    assert leaks(everything) == []
    assert "Traceback" not in everything


def test_deliveries_written_before_sink_ids_are_migrated_and_still_delivered(
        tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    state = WatchState(connect(url))
    state.add_alert("release:a@1.0.1", "release",
                    {"id": "release:a@1.0.1", "kind": "release", "package": "a",
                     "version": "1.0.1", "verdict": "malicious"}, [f"webhook:{HOOK}"], T0)
    with state.engine.begin() as conn:  # as an older chainwatch left it
        conn.execute(deliveries.update().values(last_error=f"ConnectError: {HOOK} refused"))
    assert leaks(database_text(tmp_path / "old.db"))
    got: list[dict[str, Any]] = []
    sink = WebhookSink(HOOK, transport=httpx.MockTransport(
        lambda r: got.append(json.loads(r.content)) or httpx.Response(200)))
    watcher = Watcher(WatchState(connect(url)), None, None, None, [sink],  # type: ignore[arg-type]
                      WatchConfig(), clock=Clock())
    assert watcher.deliver_once() == 1 and got[0]["id"] == "release:a@1.0.1"
    with sqlite3.connect(tmp_path / "old.db") as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        db.execute("VACUUM")
    assert leaks(database_text(tmp_path / "old.db")) == []


# -- files only the owner reads ----------------------------------------------------------------
@pytest.fixture
def loose_umask() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.usefixtures("loose_umask")
def test_the_database_is_created_for_its_owner_only(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UsageError):  # a --db in a folder that does not exist is a mistake
        connect(f"sqlite:///{tmp_path / 'new' / 'deeper' / 'watch.db'}")
    assert not (tmp_path / "new").exists()
    path = tmp_path / "watch.db"
    engine = connect(f"sqlite:///{path}")
    WatchState(engine).add_packages(["left-padder"], set())  # a write: WAL files exist
    with engine.connect():  # held open: WAL files stay
        created = [path, path.with_name("watch.db-wal"), path.with_name("watch.db-shm")]
        assert all(p.exists() for p in created)
        assert {p.name: mode(p) for p in created} == {p.name: 0o600 for p in created}
    monkeypatch.setenv("CHAINWATCH_DATA_DIR", str(tmp_path / "data" / "chainwatch"))
    monkeypatch.delenv("CHAINWATCH_DB", raising=False)
    connect(default_url()).dispose()
    assert mode(tmp_path / "data") == 0o700 and mode(tmp_path / "data" / "chainwatch") == 0o700
    assert mode(tmp_path / "data" / "chainwatch" / "chainwatch.db") == 0o600


@pytest.mark.usefixtures("loose_umask")
def test_cache_files_are_created_for_their_owner_only(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache")
    cache.put_doc("https://registry.test.invalid/left-padder", b'{"name": "left-padder"}',
                  '"e1"', "Tue, 01 Dec 2026 10:00:00 GMT")
    cache.put_blob(b"tarball bytes")
    entries = list((tmp_path / "cache").rglob("*"))
    assert len([p for p in entries if p.is_file()]) >= 4
    assert {str(p): mode(p) for p in entries} == {
        str(p): 0o700 if p.is_dir() else 0o600 for p in entries}
    assert mode(tmp_path / "cache") == 0o700


# -- the registry cache: the body before its ETag -----------------------------------------------
DOC_URL = "https://registry.test.invalid/left-padder"
OLD, NEW = b'{"name": "left-padder", "v": 1}', b'{"name": "left-padder", "v": 2}'


def crash_on_write(monkeypatch: pytest.MonkeyPatch, n: int) -> Callable[[], None]:
    real = cache_module._atomic_write
    calls = {"n": 0}

    def write(path: Path, data: bytes) -> None:
        calls["n"] += 1
        if calls["n"] == n:
            raise KeyboardInterrupt("killed")  # the process dies mid-put
        real(path, data)

    monkeypatch.setattr(cache_module, "_atomic_write", write)
    return lambda: monkeypatch.setattr(cache_module, "_atomic_write", real)


@pytest.mark.parametrize("crash_at", [1, 2])
def test_a_crash_while_caching_never_makes_an_old_body_look_current(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, crash_at: int) -> None:
    cache = Cache(tmp_path / "cache")
    cache.put_doc(DOC_URL, OLD, '"old"', "Mon, 30 Nov 2026 10:00:00 GMT")
    restore = crash_on_write(monkeypatch, crash_at)
    with pytest.raises(KeyboardInterrupt):
        cache.put_doc(DOC_URL, NEW, '"new"', "Tue, 01 Dec 2026 10:00:00 GMT")
    restore()
    found = cache.get_doc(DOC_URL)
    assert found is not None
    body, etag = found
    modified = cache.last_modified(DOC_URL)
    if body == json.loads(OLD):  # the old body may only come with its own validators
        assert (etag, modified) == ('"old"', "Mon, 30 Nov 2026 10:00:00 GMT")
    else:  # the new body, with its validators or none (then the next request is a full GET)
        assert (etag, modified) in ((None, None),
                                    ('"new"', "Tue, 01 Dec 2026 10:00:00 GMT"))


def test_validators_of_another_body_are_ignored(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache")
    cache.put_doc(DOC_URL, OLD, '"old"')
    path = cache._doc_path(DOC_URL)
    path.write_bytes(NEW)  # a body without its validators, however it got there
    assert cache.get_doc(DOC_URL) == (json.loads(NEW), None)
    path.with_suffix(".etag").write_text('"legacy"')  # a validator file of the old layout
    assert cache.get_doc(DOC_URL) == (json.loads(NEW), None)


# -- SMTP ----------------------------------------------------------------------------------
ALERT = {"id": "release:a@1.0.1", "kind": "release", "package": "a", "version": "1.0.1",
         "verdict": "malicious", "score": 97}


class Smtp:
    """A loopback SMTP server (RFC 5321 subset): plaintext, STARTTLS, or TLS from the start,
    with the test-only certificate. Records every line it reads."""

    def __init__(self, tls: str) -> None:
        self.tls = tls
        self.lines: list[bytes] = []
        self.messages: list[bytes] = []
        outer = self
        server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_context.load_cert_chain(CERT, KEY)

        class Handler(socketserver.StreamRequestHandler):
            def setup(self) -> None:
                if tls == "implicit":
                    try:
                        self.request = server_context.wrap_socket(self.request,
                                                                  server_side=True)
                    except (ssl.SSLError, OSError):
                        self.request.close()
                super().setup()

            def handle(self) -> None:
                try:
                    self.talk()
                except (ssl.SSLError, OSError, ValueError):
                    return

            def talk(self) -> None:
                self.wfile.write(b"220 test ESMTP\r\n")
                while line := self.rfile.readline():
                    outer.lines.append(line)
                    verb = line[:8].upper()
                    if verb.startswith(b"EHLO"):
                        extra = b"250-STARTTLS\r\n" if tls == "starttls" else b""
                        self.wfile.write(b"250-test\r\n" + extra + b"250-AUTH PLAIN\r\n"
                                         b"250 8BITMIME\r\n")
                    elif verb.startswith(b"STARTTLS"):
                        self.wfile.write(b"220 go ahead\r\n")
                        self.wfile.flush()
                        self.request = server_context.wrap_socket(self.request,
                                                                  server_side=True)
                        self.rfile = self.request.makefile("rb")
                        self.wfile = self.request.makefile("wb", buffering=0)
                    elif verb.startswith(b"AUTH"):
                        self.wfile.write(b"235 ok\r\n")
                    elif verb.startswith(b"DATA"):
                        self.wfile.write(b"354 go on\r\n")
                        body = b""
                        while (chunk := self.rfile.readline()) not in (b".\r\n", b""):
                            body += chunk
                        outer.messages.append(body)
                        self.wfile.write(b"250 queued\r\n")
                    elif verb.startswith(b"QUIT"):
                        self.wfile.write(b"221 bye\r\n")
                        return
                    else:
                        self.wfile.write(b"250 ok\r\n")

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]

    def url(self, scheme: str = "smtp", auth: str = "") -> str:
        return f"{scheme}://{auth}127.0.0.1:{self.port}?from=cw@example.invalid&to=sec@example.invalid"

    @property
    def auth_lines(self) -> list[bytes]:
        return [line for line in self.lines if line.upper().startswith(b"AUTH")]


@pytest.fixture
def smtp_server(request: pytest.FixtureRequest) -> Iterator[Smtp]:
    server = Smtp(request.param)
    threading.Thread(target=server.server.serve_forever, daemon=True).start()
    yield server
    server.server.shutdown()
    server.server.server_close()


def trusting() -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(CERT))


@pytest.mark.parametrize("smtp_server", ["implicit", "starttls"], indirect=True)
def test_smtp_tls_is_verified(smtp_server: Smtp) -> None:
    scheme = "smtps" if smtp_server.tls == "implicit" else "smtp"
    url = smtp_server.url(scheme, "cw:pa55word@")
    with pytest.raises(DeliveryError, match="CERTIFICATE_VERIFY_FAILED"):
        SmtpSink(url, timeout=5).send(ALERT)  # a self-signed certificate: refused
    assert smtp_server.auth_lines == [] and smtp_server.messages == []
    SmtpSink(url, timeout=5, context=trusting()).send(ALERT)  # trusted: the same relay works
    assert len(smtp_server.messages) == 1 and len(smtp_server.auth_lines) == 1


@pytest.mark.parametrize("smtp_server", ["plain"], indirect=True)
def test_no_smtp_password_over_plaintext_unless_insecure(smtp_server: Smtp) -> None:
    url = smtp_server.url("smtp", "cw:pa55word@")
    with pytest.raises(DeliveryError, match="plaintext"):
        SmtpSink(url, timeout=5).send(ALERT)
    assert smtp_server.auth_lines == [] and smtp_server.messages == []
    SmtpSink(url, timeout=5, insecure=True).send(ALERT)
    (auth,) = smtp_server.auth_lines
    assert b"pa55word" in base64.b64decode(auth.split()[-1])
    SmtpSink(smtp_server.url(), timeout=5).send(ALERT)  # no password: plaintext is allowed
    assert len(smtp_server.messages) == 2


def test_the_log_filter_scrubs_messages_arguments_and_tracebacks() -> None:
    from chainwatch.watch.redact import Redactor

    redactor = Redactor()
    redactor.add(HOOK, "webhook:id")
    redactor.add("https://u:pw@relay.invalid/x", "smtp:id")  # too short to scrub: "pw"
    try:
        raise ValueError(f"bad answer from {HOOK}")
    except ValueError:
        import sys

        record = logging.LogRecord("httpx", logging.INFO, __file__, 1, "POST %s (%s)",
                                   ("/T00000/B00000/hook-s3cr3t-token", "pw ok"),
                                   sys.exc_info())
    assert redactor.filter(record)
    text = logging.Formatter().format(record)
    assert leaks(text) == [] and text.count("webhook:id") >= 2
    assert "pw ok" in text  # short strings are left alone


def test_once_without_a_list_goes_on_with_the_watchlist_the_database_holds(
        tmp_path: Path) -> None:
    """Before: ``watch --once`` said "nothing to watch" while ``--status`` counted packages."""
    db = f"sqlite:///{tmp_path / 'w.db'}"
    WatchState(connect(db)).add_packages(["left-padder", "other-pkg"], set())
    result = CliRunner().invoke(app, [
        "watch", "--once", "--db", db, "--cache-dir", str(tmp_path / "cache"),
        "--registry", "http://127.0.0.1:9/", "-v"])
    everything = result.output + (result.stderr if result.stderr_bytes is not None else "")
    assert "watching the 2 packages this database already holds" in everything
    assert "poll left-padder failed" in everything and "nothing to watch" not in everything
    empty = CliRunner().invoke(app, ["watch", "--once", "--db", f"sqlite:///{tmp_path / 'e.db'}"])
    assert empty.exit_code == 2
