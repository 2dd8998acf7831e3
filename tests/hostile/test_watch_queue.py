"""Item 5 (watcher part): one release whose scan raises must never stall the queue, and an
interrupted delivery neither loses nor repeats an alert beyond its idempotency key.

Sequence reproduced before the fix (2026-12-03, `scan_once` five passes): the pill raised
RecursionError out of every pass, `--status` showed 0 scan failures, and the compromised release
queued behind it was never scanned."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from chainwatch.cli import app
from chainwatch.db import connect
from chainwatch.model import Verdict
from chainwatch.scan import Scanner
from chainwatch.watch.redact import sink_id
from chainwatch.watch.state import WatchState
from chainwatch.watch.watcher import Watcher
from tests.helpers import BENIGN_INDEX, clipper_source, make_tgz
from tests.unit.test_watch import T0, Clock, Recorder, Registry, make_watcher

DEPTH = 100_000


class Pill(Exception):
    """Stands for whatever a hostile release makes the analysis raise."""


class PillScanner(Scanner):
    """The real scanner, except that one release makes it raise a generic exception."""

    def __init__(self, inner: Scanner, pill: str, error: BaseException) -> None:
        self.__dict__.update(inner.__dict__)
        self.pill = pill
        self.error = error
        self.calls: list[str] = []

    def scan(self, spec: str, against: str | None = None, *args: Any, **kw: Any) -> Verdict:
        self.calls.append(spec)
        if spec == self.pill:
            self.scan_pill()
        return super().scan(spec, against, *args, **kw)

    def scan_pill(self) -> None:
        raise self.error


def deep_manifest() -> str:
    return ('{"name": "pill", "version": "1.0.1", "main": "index.js", "x": '
            + "[" * DEPTH + "]" * DEPTH + "}")


def pill_then_compromised(tmp_path: Path, injected: bool,
                          **config: Any) -> tuple[Registry, Recorder, Clock, Watcher]:
    """``pill@1.0.1`` queued first, ``left-padder@1.0.1`` (the Qix clipper) queued behind it."""
    registry, sink, clock = Registry(), Recorder(), Clock()
    for name in ("pill", "left-padder"):
        registry.publish(name, "1.0.0", BENIGN_INDEX, T0 - 90 * 86400)
    watcher = make_watcher(tmp_path, registry, sink, clock, **config)
    watcher.watch(["pill", "left-padder"], hot=set())
    watcher.run_once()  # baseline
    if injected:
        registry.publish("pill", "1.0.1", BENIGN_INDEX, T0 + 10)
        watcher.scanner = PillScanner(watcher.scanner, "pill@1.0.1",
                                      Pill("boom \x1b[31mred\n second line"))
    else:
        registry.packages["pill"]["1.0.1"] = (
            make_tgz({"package.json": deep_manifest(), "index.js": BENIGN_INDEX}),
            datetime.fromtimestamp(T0 + 10, UTC).isoformat(), "alice")
    clock.now = T0 + 100
    assert watcher.poll("pill", False, True) == ["1.0.1"]
    registry.publish("left-padder", "1.0.1", clipper_source(), T0 + 20)
    clock.now = T0 + 101
    assert watcher.poll("left-padder", False, True) == ["1.0.1"]
    assert [q.name for q in watcher.state.queued()] == ["pill", "left-padder"]  # pill first
    return registry, sink, clock, watcher


def sample(watcher: Watcher, name: str, **labels: str) -> float:
    value = watcher.metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def pill_row(watcher: Watcher) -> dict[str, Any]:
    (row,) = [f for f in watcher.state.scan_failures() if f["name"] == "pill"]
    return row


@pytest.mark.parametrize("injected", [True, False], ids=["injected-exception", "deep-json"])
def test_the_release_behind_a_poison_pill_alerts_in_the_same_pass(tmp_path: Path,
                                                                   injected: bool) -> None:
    _registry, sink, clock, watcher = pill_then_compromised(tmp_path, injected)
    result = watcher.run_once()  # before the fix: the pill's exception escaped from here
    assert [a["id"] for a in sink.got] == ["release:left-padder@1.0.1"]
    assert result["scanned"] >= 2
    pill = [f for f in watcher.state.scan_failures() if f["name"] == "pill"]
    if pill:  # the parse may be fixed to a verdict meanwhile; a failure must be recorded
        assert pill[0]["attempts"] == 1 and pill[0]["status"] == "queued"
        assert pill[0]["next_attempt"] > clock.now
        assert watcher.state.status(clock.now)["scan_retrying"] == 1


def test_a_poison_pill_backs_off_then_raises_one_scan_failed_alert(tmp_path: Path) -> None:
    _registry, sink, clock, watcher = pill_then_compromised(
        tmp_path, injected=True, max_scan_attempts=3, scan_backoff=60.0)
    scanner = watcher.scanner
    assert isinstance(scanner, PillScanner)
    watcher.run_once()
    assert scanner.calls == ["pill@1.0.1", "left-padder@1.0.1"]
    row = pill_row(watcher)
    assert (row["attempts"], row["status"], row["next_attempt"]) == (1, "queued", clock.now + 60)
    assert "\x1b" not in row["last_error"] and "\n" not in row["last_error"]
    assert row["last_error"].startswith("Pill: boom")
    assert sample(watcher, "chainwatch_watch_scan_failures_total", outcome="retry") == 1
    assert sample(watcher, "chainwatch_watch_scans_retrying") == 1
    # backing off: further passes do not touch it
    for _ in range(3):
        watcher.run_once()
    assert scanner.calls.count("pill@1.0.1") == 1
    clock.now += 61
    watcher.run_once()
    assert scanner.calls.count("pill@1.0.1") == 2 and pill_row(watcher)["attempts"] == 2
    assert pill_row(watcher)["next_attempt"] == clock.now + 120  # doubled
    assert [a["kind"] for a in sink.got] == ["release"]  # no scan-failed alert yet
    clock.now += 121
    watcher.run_once()
    assert pill_row(watcher)["status"] == "failed"
    assert [a["kind"] for a in sink.got] == ["release", "scan-failed"]
    alert = sink.got[1]
    assert alert["id"] == "scan-failed:pill@1.0.1" and alert["attempts"] == 3
    assert alert["package"] == "pill" and alert["version"] == "1.0.1"
    assert alert["error"].startswith("Pill: boom") and "\x1b" not in alert["error"]
    assert sample(watcher, "chainwatch_watch_scan_failures_total", outcome="gave_up") == 1
    assert sample(watcher, "chainwatch_watch_scans_failed") == 1
    assert sample(watcher, "chainwatch_watch_scans_retrying") == 0
    assert sample(watcher, "chainwatch_watch_alerts_total", kind="scan-failed") == 1
    # given up: never scanned again, never alerted twice
    for _ in range(3):
        clock.now += 4000
        watcher.run_once()
    assert scanner.calls.count("pill@1.0.1") == 3
    assert [a["kind"] for a in sink.got] == ["release", "scan-failed"]
    status = watcher.state.status(clock.now)
    assert status["scan_failures"] == 1 and status["queued"] == 0


def test_a_release_that_kills_the_watcher_is_not_retried_first_after_each_restart(
        tmp_path: Path) -> None:
    """A crash is no exception the watcher can catch (a native parser's segfault, the OOM
    killer): the attempt is counted before the scan begins, so after a restart the queue moves
    on, and after max_scan_attempts the release is given up with a scan-failed alert."""
    registry, sink, clock, watcher = pill_then_compromised(tmp_path, injected=True,
                                                           scan_backoff=60.0)
    scanner = watcher.scanner
    assert isinstance(scanner, PillScanner)
    scanner.error = Killed()

    def restart() -> Watcher:
        again = make_watcher(tmp_path, registry, sink, clock, scan_backoff=60.0)
        again.scanner = scanner
        return again

    with pytest.raises(Killed):
        watcher.run_once()
    assert scanner.calls == ["pill@1.0.1"] and sink.got == []  # died before the next one
    watcher = restart()
    watcher.run_once()
    assert [a["id"] for a in sink.got] == ["release:left-padder@1.0.1"]
    assert scanner.calls == ["pill@1.0.1", "left-padder@1.0.1"]
    for wait in (61, 121):
        clock.now += wait
        with pytest.raises(Killed):
            watcher.run_once()
        watcher = restart()
    assert scanner.calls.count("pill@1.0.1") == 3
    clock.now += 241
    watcher.run_once()
    assert scanner.calls.count("pill@1.0.1") == 3  # given up without a fourth crash
    assert [a["kind"] for a in sink.got] == ["release", "scan-failed"]
    assert sink.got[1]["error"].startswith("Interrupted: 3 scans of pill@1.0.1")
    assert watcher.state.status(clock.now)["scan_failures"] == 1


def test_status_shows_the_failing_release(tmp_path: Path) -> None:
    _registry, _sink, _clock, watcher = pill_then_compromised(tmp_path, injected=True)
    watcher.run_once()
    result = CliRunner().invoke(app, ["watch", "--status", "--db",
                                      f"sqlite:///{tmp_path / 'watch.db'}"])
    assert result.exit_code == 0, result.output
    status = json.loads(result.stdout)
    assert status["scan_retrying"] == 1 and status["scan_failures"] == 0
    (failed,) = status["failed_scans"]
    assert failed["package"] == "pill" and failed["status"] == "retrying"
    assert failed["attempts"] == 1 and failed["error"].startswith("Pill: boom")
    assert failed["next_attempt"].endswith("Z")


@pytest.mark.parametrize("error", [RecursionError("maximum recursion depth exceeded"),
                                   MemoryError(), KeyError("dist"), ZeroDivisionError()],
                         ids=lambda e: type(e).__name__)
def test_any_exception_in_a_scan_is_recorded_against_its_release(tmp_path: Path,
                                                                 error: Exception) -> None:
    _registry, sink, _clock, watcher = pill_then_compromised(tmp_path, injected=True)
    assert isinstance(watcher.scanner, PillScanner)
    watcher.scanner.error = error
    watcher.run_once()
    assert [a["id"] for a in sink.got] == ["release:left-padder@1.0.1"]
    assert pill_row(watcher)["last_error"].startswith(type(error).__name__)


def test_a_hostile_packument_does_not_stop_the_polling(tmp_path: Path) -> None:
    registry, sink, clock = Registry(), Recorder(), Clock()
    for name in ("pill", "left-padder"):
        registry.publish(name, "1.0.0", BENIGN_INDEX, T0 - 90 * 86400)
    watcher = make_watcher(tmp_path, registry, sink, clock)
    watcher.watch(["pill", "left-padder"], hot=set())
    watcher.run_once()
    registry.publish("left-padder", "1.0.1", clipper_source(), T0 + 20)
    original = watcher.poll

    def poll(name: str, hot: bool, baselined: bool, claim: str | None = None) -> list[str]:
        if name == "pill":
            raise TypeError("'NoneType' object is not subscriptable")
        return original(name, hot, baselined, claim)

    watcher.poll = poll  # type: ignore[method-assign]
    clock.now = T0 + 100
    assert watcher.run_once()["polled"] == 2
    assert [a["id"] for a in sink.got] == ["release:left-padder@1.0.1"]
    status = watcher.state.status_of("pill")
    assert status["failures"] == 1 and status["last_error"].startswith("TypeError")
    assert status["next_due"] > clock.now


# -- deliveries --------------------------------------------------------------------------------
class Killed(BaseException):
    """The process dies: not an error the watcher could catch and record."""


def two_alerts(tmp_path: Path, sink_name: str) -> WatchState:
    state = WatchState(connect(f"sqlite:///{tmp_path / 'watch.db'}"))
    for n in ("a", "b"):
        payload = {"schema": "chainwatch.alert/1", "id": f"release:{n}@1.0.1",
                   "kind": "release", "package": n, "version": "1.0.1",
                   "verdict": "malicious", "score": 90}
        assert state.add_alert(f"release:{n}@1.0.1", "release", payload, [sink_name], T0)
    return state


def delivery_watcher(state: WatchState, sink: Any, clock: Clock) -> Watcher:
    from chainwatch.watch.watcher import WatchConfig

    return Watcher(state, None, None, None, [sink], WatchConfig(), clock=clock)  # type: ignore[arg-type]


def test_a_sink_bug_on_one_alert_does_not_block_the_others(tmp_path: Path) -> None:
    class Picky(Recorder):
        def send(self, alert: dict[str, Any]) -> None:
            if alert["package"] == "a":
                raise TypeError("unexpected field")
            super().send(alert)

    sink, clock = Picky(), Clock()
    state = two_alerts(tmp_path, sink.name)
    watcher = delivery_watcher(state, sink, clock)
    assert watcher.deliver_once() == 1
    assert [a["id"] for a in sink.got] == ["release:b@1.0.1"]
    assert state.status(clock.now)["deliveries_pending"] == 1  # a: owed, backing off
    assert sample(watcher, "chainwatch_watch_alert_delivery_failures_total") == 1


def test_killed_mid_delivery_resends_only_the_alert_in_flight(tmp_path: Path) -> None:
    """The sink accepted alert a, then the process died before the watcher committed: the
    restart sends a again (same id, the receiver's idempotency key) and b once; never more."""

    class AcceptsThenDies(Recorder):
        def send(self, alert: dict[str, Any]) -> None:
            super().send(alert)
            raise Killed

    dying, clock = AcceptsThenDies(), Clock()
    state = two_alerts(tmp_path, "recorder")
    with pytest.raises(Killed):
        delivery_watcher(state, dying, clock).deliver_once()
    assert [a["id"] for a in dying.got] == ["release:a@1.0.1"]
    clock.now += 61  # the claim on a (held by this live test process) lapses
    honest = Recorder()
    again = delivery_watcher(WatchState(connect(f"sqlite:///{tmp_path / 'watch.db'}")),
                             honest, clock)
    assert again.deliver_once() == 2
    assert sorted(a["id"] for a in honest.got) == ["release:a@1.0.1", "release:b@1.0.1"]
    clock.now += 3600
    assert again.deliver_once() == 0 and len(honest.got) == 2
    everything = [a["id"] for a in dying.got + honest.got]
    assert everything.count("release:a@1.0.1") == 2 and everything.count("release:b@1.0.1") == 1


# -- a real SIGKILL while a webhook holds the request -----------------------------------------
CHILD = """
import sys
from chainwatch.db import connect
from chainwatch.watch.sinks import WebhookSink
from chainwatch.watch.state import WatchState
from chainwatch.watch.watcher import WatchConfig, Watcher
state = WatchState(connect(sys.argv[1]))
watcher = Watcher(state, None, None, None, [WebhookSink(sys.argv[2], timeout=30)], WatchConfig())
print(watcher.deliver_once())
"""


class Receiver:
    """A loopback webhook that records each POST; told a pid, it SIGKILLs that process after
    it has read the first request and before it answers."""

    def __init__(self) -> None:
        self.got: list[tuple[str, str]] = []
        self.kill: int | None = None
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.got.append((self.headers["Idempotency-Key"], body["id"]))
                if outer.kill is not None:
                    os.kill(outer.kill, signal.SIGKILL)
                    outer.kill = None
                    return
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook/s3cr3t"

    def __enter__(self) -> Receiver:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


def test_sigkill_mid_delivery_loses_nothing(tmp_path: Path, receiver: Receiver) -> None:
    url = f"sqlite:///{tmp_path / 'watch.db'}"
    two_alerts(tmp_path, sink_id("webhook", receiver.url))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}

    def run(kill: bool) -> subprocess.CompletedProcess[str]:
        child = subprocess.Popen([sys.executable, "-c", CHILD, url, receiver.url], env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if kill:
            receiver.kill = child.pid
        out, err = child.communicate(timeout=60)
        return subprocess.CompletedProcess(child.args, child.returncode, out, err)

    first = run(kill=True)
    assert first.returncode == -signal.SIGKILL, first.stderr
    assert len(receiver.got) == 1  # accepted by the receiver, never committed as sent
    second = run(kill=False)
    assert second.returncode == 0 and second.stdout.strip() == "2", second.stderr
    third = run(kill=False)
    assert third.returncode == 0 and third.stdout.strip() == "0", third.stderr
    ids = [alert for _, alert in receiver.got]
    assert sorted(set(ids)) == ["release:a@1.0.1", "release:b@1.0.1"]  # nothing lost
    assert len(ids) == 3  # one duplicate: the alert in flight when the process died
    assert all(key == alert for key, alert in receiver.got)  # its idempotency key repeats
    state = WatchState(connect(url))
    assert state.status()["deliveries_pending"] == 0


def test_a_scan_failed_alert_is_inert_in_slack(tmp_path: Path) -> None:
    """The error text of a scan-failed alert comes from the hostile release."""
    import httpx

    from chainwatch.watch.sinks import SlackSink

    _registry, _sink, _clock, watcher = pill_then_compromised(tmp_path, injected=True,
                                                            max_scan_attempts=1)
    assert isinstance(watcher.scanner, PillScanner)
    watcher.scanner.error = Pill("<!channel> <https://evil.invalid|click> \x1b]8;;x\x07")
    posted: list[dict[str, Any]] = []
    slack = SlackSink("https://hooks.slack.invalid/services/T/B/x", transport=httpx.MockTransport(
        lambda r: posted.append(json.loads(r.content)) or httpx.Response(200)))
    watcher.sinks = {slack.name: slack}
    watcher.run_once()
    (text,) = [p["text"] for p in posted if "SCAN FAILED" in p["text"]]
    assert "pill@1.0.1" in text and "after 1 attempt (" in text
    assert "<!channel>" not in text and "<https://" not in text and "\x1b" not in text


def test_a_database_from_before_the_backoff_column_is_migrated(tmp_path: Path) -> None:
    import sqlite3

    url = f"sqlite:///{tmp_path / 'old.db'}"
    WatchState(connect(url)).engine.dispose()
    with sqlite3.connect(tmp_path / "old.db") as db:  # the table as chainwatch 2026-11 made it
        db.execute("DROP INDEX ix_watch_versions_status")
        db.execute("ALTER TABLE watch_versions DROP COLUMN next_attempt")
        db.execute("CREATE INDEX ix_watch_versions_status ON watch_versions (status)")
        db.execute("INSERT INTO watch_versions (name, version, seen_at, status, attempts) "
                   "VALUES ('left-padder', '1.0.1', 1.0, 'queued', 0)")
        assert "next_attempt" not in {r[1] for r in db.execute("PRAGMA table_info(watch_versions)")}
    state = WatchState(connect(url))
    (item,) = state.queued(now=T0)
    assert (item.name, item.version, item.attempts) == ("left-padder", "1.0.1", 0)


# -- a real crash (SIGABRT) while scanning the pill ------------------------------------------
CRASHING_CHILD = """
import os, sys
from pathlib import Path
from tests.hostile.test_watch_queue import PillScanner, full_registry
from tests.unit.test_watch import Clock, make_watcher
from chainwatch.watch.sinks import FeedSink

tmp, now = Path(sys.argv[1]), float(sys.argv[2])
clock = Clock()
clock.now = now
watcher = make_watcher(tmp, full_registry(), FeedSink(tmp / "alerts.jsonl"), clock)
scanner = PillScanner(watcher.scanner, "pill@1.0.1", Exception())
scanner.scan_pill = os.abort
watcher.scanner = scanner
print(watcher.run_once()["scanned"])
"""


def full_registry() -> Registry:
    registry = Registry()
    for name in ("pill", "left-padder"):
        registry.publish(name, "1.0.0", BENIGN_INDEX, T0 - 90 * 86400)
    registry.publish("pill", "1.0.1", BENIGN_INDEX, T0 + 10)
    registry.publish("left-padder", "1.0.1", clipper_source(), T0 + 20)
    return registry


def test_a_real_crash_while_scanning_moves_the_queue_on(tmp_path: Path) -> None:
    """The watcher process dies (SIGABRT, as in a native parser's crash) each time it scans the
    pill; restarted each time, it still alerts on the release behind and gives the pill up.
    Alerts go to a feed file, which outlives the crashes."""
    registry = full_registry()
    clock = Clock()
    first = {name: registry.packages[name].pop("1.0.1") for name in ("pill", "left-padder")}
    watcher = make_watcher(tmp_path, registry, Recorder(), clock)
    watcher.watch(["pill", "left-padder"], hot=set())
    watcher.run_once()  # baseline
    clock.now = T0 + 100
    for name in ("pill", "left-padder"):
        registry.packages[name]["1.0.1"] = first[name]
        assert watcher.poll(name, False, True) == ["1.0.1"]
        clock.now += 1
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}

    def run(now: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-c", CRASHING_CHILD, str(tmp_path), str(now)],
                              env=env, capture_output=True, text=True, timeout=120,
                              check=False)

    def alerts() -> list[str]:
        feed = tmp_path / "alerts.jsonl"
        lines = feed.read_text().splitlines() if feed.exists() else []
        return [json.loads(line)["id"] for line in lines]

    now = clock.now
    assert run(now).returncode == -signal.SIGABRT  # died on the pill; nothing after it ran
    assert alerts() == []
    done = run(now)  # restarted at once: the pill waits its backoff, the queue moves on
    assert done.returncode == 0, done.stderr
    assert alerts() == ["release:left-padder@1.0.1"]
    for wait in (61, 121):
        now += wait
        assert run(now).returncode == -signal.SIGABRT
    now += 241
    last = run(now)
    assert last.returncode == 0, last.stderr
    assert alerts() == ["release:left-padder@1.0.1", "scan-failed:pill@1.0.1"]
