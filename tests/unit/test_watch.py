"""The watcher against an in-process fake registry whose packuments change as the test publishes."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from chainwatch.db import connect
from chainwatch.errors import UsageError
from chainwatch.model import Level
from chainwatch.registry import NpmConfig, RegistryClient
from chainwatch.scan import Scanner
from chainwatch.verdicts import VerdictStore
from chainwatch.watch.changes import ChangesFeed
from chainwatch.watch.sinks import DeliveryError, SlackSink, slack_escape
from chainwatch.watch.state import WatchState
from chainwatch.watch.watcher import Budget, WatchConfig, Watcher
from chainwatch.watch.watchlist import build_watchlist, read_packages_file
from tests.helpers import BENIGN_INDEX, clipper_source, make_tgz, manifest

REG = "https://registry.test.invalid/"
T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC).timestamp()


class Registry:
    """Packuments built from what the test has published; counts and can fail requests."""

    def __init__(self) -> None:
        self.packages: dict[str, dict[str, tuple[bytes, str, str]]] = {}
        self.fail: int = 0
        self.requests = 0

    def publish(self, name: str, version: str, code: str, when: float,
                publisher: str = "alice") -> None:
        files = {"package.json": manifest(name=name, version=version), "index.js": code}
        self.packages.setdefault(name, {})[version] = (
            make_tgz(files), datetime.fromtimestamp(when, UTC).isoformat(), publisher)

    def packument(self, name: str) -> dict[str, Any]:
        base = name.rsplit("/", 1)[-1]
        versions = self.packages[name]
        return {"name": name, "dist-tags": {"latest": list(versions)[-1]},
                "time": {v: t for v, (_, t, _) in versions.items()},
                "versions": {v: {"name": name, "version": v,
                                 "_npmUser": {"name": who, "email": f"{who}@example.invalid"},
                                 "dist": {"tarball": f"{REG}{name}/-/{base}-{v}.tgz",
                                          "integrity": "sha512-" + base64.b64encode(
                                              hashlib.sha512(tgz).digest()).decode()}}
                             for v, (tgz, _, who) in versions.items()}}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        if self.fail:
            self.fail -= 1
            return httpx.Response(503, text="maintenance")
        path = request.url.path.lstrip("/")
        if path.endswith(".tgz"):
            name, _, file = path.partition("/-/")
            version = file[len(name.rsplit("/", 1)[-1]) + 1:-4]
            return httpx.Response(200, content=self.packages[name][version][0])
        name = path.replace("%2f", "/").replace("%2F", "/")
        if name not in self.packages:
            return httpx.Response(404, json={"error": "not found"})
        return httpx.Response(200, json=self.packument(name))


class Recorder:
    def __init__(self, name: str = "recorder") -> None:
        self.name = name
        self.got: list[dict[str, Any]] = []
        self.fail_next = 0

    def send(self, alert: dict[str, Any]) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise DeliveryError("receiver down")
        self.got.append(alert)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def make_watcher(tmp_path: Path, registry: Registry, sink: Recorder, clock: Clock,
                 **config: Any) -> Watcher:
    engine = connect(f"sqlite:///{tmp_path / 'watch.db'}")
    client = RegistryClient(NpmConfig(registry=REG), tmp_path / "cache", backoff=0, retries=0,
                            transport=httpx.MockTransport(registry))
    return Watcher(WatchState(engine), client, Scanner(client, workers=1),
                   VerdictStore(f"sqlite:///{tmp_path / 'watch.db'}"), [sink],
                   WatchConfig(**{"interval": 60.0, "hot_interval": 60.0, **config}),
                   clock=clock)


def world(tmp_path: Path) -> tuple[Registry, Recorder, Clock, Watcher]:
    registry, sink, clock = Registry(), Recorder(), Clock()
    registry.publish("left-padder", "1.0.0", BENIGN_INDEX, T0 - 90 * 86400)
    watcher = make_watcher(tmp_path, registry, sink, clock)
    watcher.watch(["left-padder"], hot=set())
    return registry, sink, clock, watcher


def test_baseline_then_a_compromised_release_raises_one_alert(tmp_path: Path) -> None:
    registry, sink, clock, watcher = world(tmp_path)
    assert watcher.run_once() == {"polled": 1, "scanned": 0, "delivered": 0}  # baseline only
    registry.publish("left-padder", "1.0.1", BENIGN_INDEX + clipper_source(), T0 + 30)
    clock.now = T0 + 45  # not due yet: nothing asked
    assert watcher.run_once()["polled"] == 0
    clock.now = T0 + 75
    assert watcher.run_once() == {"polled": 1, "scanned": 1, "delivered": 1}
    (alert,) = sink.got
    assert alert["id"] == "release:left-padder@1.0.1" and alert["verdict"] == "malicious"
    assert alert["baseline"] == "1.0.0" and "pin left-padder to 1.0.0" in alert["action"]
    assert alert["latency_seconds"] == 45.0 and alert["evidence"][0]["rule"]
    assert alert["publisher"] == "alice"
    # the verdict is kept for the gate
    stored = VerdictStore(f"sqlite:///{tmp_path / 'watch.db'}").for_package("left-padder")
    assert [(v.version, v.level) for v in stored] == [("1.0.1", Level.MALICIOUS)]
    samples = {s.name: s.value for s in watcher.metrics.latency.collect()[0].samples}
    assert samples["chainwatch_watch_publish_to_verdict_seconds_sum"] == 45.0


def test_a_restart_neither_misses_nor_repeats(tmp_path: Path) -> None:
    registry, sink, clock, watcher = world(tmp_path)
    watcher.run_once()
    registry.publish("left-padder", "1.0.1", BENIGN_INDEX + clipper_source(), T0 + 10)
    clock.now = T0 + 100
    watcher.poll_once()
    # "killed" after the poll committed: the queued version survives in the database
    again = make_watcher(tmp_path, registry, sink, clock)
    again.watch(["left-padder"], hot=set())
    assert again.scan_once() == 1 and sink.got == []
    # "killed" after the scan committed its alert but before delivering: a restart delivers
    third = make_watcher(tmp_path, registry, sink, clock)
    assert third.deliver_once() == 1 and third.deliver_once() == 0
    clock.now = T0 + 300
    assert third.run_once()["scanned"] == 0  # polled again: nothing new, nothing re-sent
    assert [a["id"] for a in sink.got] == ["release:left-padder@1.0.1"]


def test_deliveries_retry_with_backoff(tmp_path: Path) -> None:
    registry, sink, clock, watcher = world(tmp_path)
    watcher.run_once()
    registry.publish("left-padder", "1.0.1", BENIGN_INDEX + clipper_source(), T0 + 10)
    sink.fail_next = 2
    clock.now = T0 + 100
    assert watcher.run_once()["delivered"] == 0
    assert watcher.deliver_once() == 0  # backing off: not retried at once
    clock.now += 3
    assert watcher.deliver_once() == 0  # second failure; the wait doubles
    clock.now += 5
    assert watcher.deliver_once() == 1 and len(sink.got) == 1
    assert watcher.state.status()["deliveries_pending"] == 0


def test_registry_errors_slow_the_watch_down_without_losing_a_version(tmp_path: Path) -> None:
    registry, sink, clock, watcher = world(tmp_path)
    watcher.run_once()
    registry.publish("left-padder", "1.0.1", BENIGN_INDEX + clipper_source(), T0 + 10)
    registry.fail = 1
    clock.now = T0 + 100
    assert watcher.run_once()["scanned"] == 0
    status = watcher.state.status_of("left-padder")
    assert status["failures"] == 1 and status["next_due"] >= clock.now + 100  # backed off
    clock.now = status["next_due"] + 1
    assert watcher.run_once()["scanned"] == 1 and len(sink.got) == 1


def test_a_new_package_with_a_fresh_release_is_scanned_at_once(tmp_path: Path) -> None:
    registry, sink, clock = Registry(), Recorder(), Clock()
    registry.publish("left-padder", "1.0.0", BENIGN_INDEX, T0 - 90 * 86400)
    registry.publish("left-padder", "1.0.1", BENIGN_INDEX + clipper_source(), T0 - 3600)
    watcher = make_watcher(tmp_path, registry, sink, clock)
    watcher.watch(["left-padder"], hot=set())
    assert watcher.run_once()["scanned"] == 1 and sink.got[0]["version"] == "1.0.1"


def test_a_burst_by_one_account_is_one_incident_alert(tmp_path: Path) -> None:
    registry, sink, clock = Registry(), Recorder(), Clock()
    names = ["left-padder", "right-padder", "mid-padder", "top-padder"]
    for name in names:
        registry.publish(name, "1.0.0", BENIGN_INDEX, T0 - 90 * 86400, publisher="qix")
    watcher = make_watcher(tmp_path, registry, sink, clock)
    watcher.watch(names, hot=set())
    watcher.run_once()
    for i, name in enumerate(names):
        registry.publish(name, "1.0.1", BENIGN_INDEX + clipper_source(), T0 + 60 + i * 60,
                         publisher="qix")
    clock.now = T0 + 400
    watcher.run_once()
    bursts = [a for a in sink.got if a["kind"] == "burst"]
    assert len(bursts) == 1, [a["id"] for a in sink.got]
    assert bursts[0]["publisher"] == "qix" and len(bursts[0]["releases"]) >= 3
    assert len([a for a in sink.got if a["kind"] == "release"]) == 4
    # what the watcher stored becomes one incident, ranked account takeover for theft
    from chainwatch.incidents.ach import assess
    from chainwatch.incidents.store import IncidentStore

    (incident,) = IncidentStore(engine=watcher.state.engine).rebuild()
    assert incident.publishers == ["qix"] and len(incident.packages) == 4
    assert assess(incident).best.hypothesis == "H1"


def test_changes_feed_marks_watched_packages_due_and_checkpoints(tmp_path: Path) -> None:
    engine = connect(f"sqlite:///{tmp_path / 'c.db'}")
    state = WatchState(engine)
    state.add_packages(["chalk", "debug"], set())
    with engine.begin() as conn:
        from sqlalchemy import update

        from chainwatch.watch.state import packages
        conn.execute(update(packages).values(next_due=T0 + 3600))
    answers = [{"results": [{"id": "chalk", "seq": 7}, {"id": "other", "seq": 8}],
                "last_seq": 8}, "not json"]
    seen: list[str] = []

    def feed(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.params["since"])
        answer = answers.pop(0)
        return httpx.Response(200, json=answer) if isinstance(answer, dict) else \
            httpx.Response(200, text=answer)

    follower = ChangesFeed("https://replicate.test.invalid/_changes", state, {"chalk", "debug"},
                           http=httpx.Client(transport=httpx.MockTransport(feed)))
    assert follower.follow_once() == 1
    assert [n for n, _, _ in state.due(T0, 10)] == ["chalk"]
    assert follower.follow_once() == 0  # a bad answer does not move the checkpoint
    assert seen == ["now", "8"] and state.checkpoint(follower.key) == "8"


def test_slack_text_is_escaped() -> None:
    assert slack_escape("<!channel> & <https://x.invalid|click>") == (
        "&lt;!channel&gt; &amp; &lt;https://x.invalid|click&gt;")
    posted: list[dict[str, Any]] = []
    sink = SlackSink("https://hooks.test.invalid/x", transport=httpx.MockTransport(
        lambda r: posted.append(json.loads(r.content)) or httpx.Response(200)))
    sink.send({"id": "release:a@1", "kind": "release", "package": "<!here>", "version": "1",
               "verdict": "malicious", "score": 90,
               "evidence": [{"rule": "R", "message": "<@U123> \x1b[31mred", "file": "i.js",
                             "line": 1}]})
    text = posted[0]["text"]
    assert "<!here>" not in text and "<@U123>" not in text and "\x1b" not in text


def test_watchlists(tmp_path: Path) -> None:
    listing = tmp_path / "watch.txt"
    listing.write_text("# ours\nchalk\n@scope/pkg@1.2.3  # pinned\n\ndebug\n")
    assert read_packages_file(listing) == ["chalk", "@scope/pkg", "debug"]
    project = tmp_path / "app"
    project.mkdir()
    (project / "package-lock.json").write_text(json.dumps({
        "name": "app", "lockfileVersion": 3, "packages": {
            "": {"dependencies": {"debug": "^4"}},
            "node_modules/debug": {"version": "4.4.1"},
            "node_modules/ms": {"version": "2.1.3"}}}))
    names = build_watchlist(listing, [project], 3)
    assert names[:3] == ["chalk", "@scope/pkg", "debug"] and "ms" in names and len(names) == 6
    listing.write_text("Not A Name\n")
    with pytest.raises(UsageError):
        read_packages_file(listing)
    with pytest.raises(UsageError):
        build_watchlist(None, [], 0)


def test_budget_spreads_requests() -> None:
    clock = Clock()
    budget = Budget(60, clock=clock)  # one a second, bursts of ten
    assert budget.take(100) == 10 and budget.take(5) == 0
    clock.now += 3
    assert budget.take(5) == 3
    budget.pause(30)
    clock.now += 10
    assert budget.take(5) == 0
    assert WatchConfig(interval=60, budget=600).effective_interval(10_000) == 1000.0


def test_429_with_retry_after_and_timeouts_slow_down_without_loss(tmp_path: Path) -> None:
    import time as clock_module

    registry, sink, clock, watcher = world(tmp_path)
    watcher.run_once()
    registry.publish("left-padder", "1.0.1", BENIGN_INDEX + clipper_source(), T0 + 10)
    answers: list[str] = ["429", "timeout"]

    def flaky(request: httpx.Request) -> httpx.Response:
        if answers and not request.url.path.endswith(".tgz"):
            kind = answers.pop(0)
            if kind == "timeout":
                raise httpx.ReadTimeout("slow registry", request=request)
            return httpx.Response(429, headers={"Retry-After": "1"})
        return registry(request)

    # the client honours Retry-After itself (one retry here), then the timeout backs off
    watcher.client = RegistryClient(NpmConfig(registry=REG), tmp_path / "cache2", backoff=0,
                                    retries=1, transport=httpx.MockTransport(flaky))
    watcher.scanner = Scanner(watcher.client, workers=1)
    clock.now = T0 + 100
    started = clock_module.monotonic()
    assert watcher.run_once()["scanned"] == 0  # 429, waited, retried into the timeout
    assert clock_module.monotonic() - started >= 1.0
    status = watcher.state.status_of("left-padder")
    assert status["failures"] == 1 and "timed out" in status["last_error"]
    clock.now = status["next_due"] + 1
    assert watcher.run_once()["scanned"] == 1 and [a["version"] for a in sink.got] == ["1.0.1"]


def test_the_action_pins_to_the_newest_unflagged_version(tmp_path: Path) -> None:
    registry, sink, clock, watcher = world(tmp_path)
    watcher.run_once()
    registry.publish("left-padder", "1.0.1", BENIGN_INDEX + clipper_source(), T0 + 10)
    registry.publish("left-padder", "1.0.2", BENIGN_INDEX + clipper_source() + "\n//2\n",
                     T0 + 20)
    clock.now = T0 + 100
    watcher.run_once()
    pins = {a["version"]: (a["baseline"], a["pin_to"]) for a in sink.got}
    # 1.0.2 is judged against the release before the burst, never against flagged 1.0.1
    assert pins == {"1.0.1": ("1.0.0", "1.0.0"), "1.0.2": ("1.0.0", "1.0.0")}
    assert "pin left-padder to 1.0.0" in next(
        a for a in sink.got if a["version"] == "1.0.2")["action"]


def test_smtp_sink_sends_mail_to_a_loopback_server() -> None:
    import socketserver
    import threading

    from chainwatch.watch.sinks import SmtpSink

    received: list[bytes] = []

    class Handler(socketserver.StreamRequestHandler):
        """Just enough SMTP (RFC 5321) to accept one message."""

        def handle(self) -> None:
            self.wfile.write(b"220 test ESMTP\r\n")
            while line := self.rfile.readline():
                verb = line[:4].upper()
                if verb == b"EHLO":
                    self.wfile.write(b"250-test\r\n250 8BITMIME\r\n")
                elif verb == b"DATA":
                    self.wfile.write(b"354 go on\r\n")
                    body = b""
                    while (chunk := self.rfile.readline()) not in (b".\r\n", b""):
                        body += chunk
                    received.append(body)
                    self.wfile.write(b"250 queued\r\n")
                elif verb == b"QUIT":
                    self.wfile.write(b"221 bye\r\n")
                    return
                else:
                    self.wfile.write(b"250 ok\r\n")

    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        port = server.server_address[1]
        sink = SmtpSink(f"smtp://127.0.0.1:{port}?from=cw@example.invalid&to=sec@example.invalid")
        sink.send({"id": "release:a@1.0.1", "kind": "release", "package": "a",
                   "version": "1.0.1", "verdict": "malicious", "score": 97})
        server.shutdown()
    assert b"Subject: [chainwatch] MALICIOUS: a@1.0.1" in received[0]
    with pytest.raises(ValueError):
        SmtpSink("smtp://relay.example.invalid")  # no recipient
    with pytest.raises(DeliveryError):
        SmtpSink(f"smtp://127.0.0.1:{port}?to=x@example.invalid", timeout=2).send(
            {"id": "x", "kind": "release", "package": "a", "version": "1", "verdict": "malicious"})


def test_status_counts_baselined_versions_and_each_poll_pass_logs_what_it_found(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    registry, _sink, clock, watcher = world(tmp_path)
    registry.publish("left-padder", "1.0.1", BENIGN_INDEX, T0 - 80 * 86400)
    registry.publish("right-padder", "2.0.0", BENIGN_INDEX, T0 - 70 * 86400)
    watcher.watch(["left-padder", "right-padder"], hot=set())
    with caplog.at_level("INFO", logger="chainwatch"):
        assert watcher.run_once(roles=["poller"])["polled"] == 2
    status = watcher.state.status()
    assert status["versions_seen"] == 0 and status["queued"] == 0
    assert status["versions_baselined"] == 3 and status["packages_baselined"] == 2
    assert "baselined 3 versions of 2 packages" in caplog.messages
    assert not any(m.startswith("queued ") for m in caplog.messages)
    caplog.clear()
    registry.publish("right-padder", "2.0.1", BENIGN_INDEX, T0 + 30)
    clock.now = T0 + 75
    with caplog.at_level("INFO", logger="chainwatch"):
        watcher.run_once(roles=["poller"])
    assert "queued 1 new versions of 1 packages" in caplog.messages
    assert not any(m.startswith("baselined ") for m in caplog.messages)
    status = watcher.state.status()
    assert status["versions_seen"] == 1 and status["versions_baselined"] == 3
