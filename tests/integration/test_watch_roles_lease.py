"""The claim and lease protocol of ``watch --role`` (watch/state.py), on SQLite and on a real
PostgreSQL server (the throwaway cluster of test_postgres.py): a claimed row is not claimed again
until its lease runs out; whatever ends a claim changes nothing once another process holds the
row; two claimers racing on one queue never get the same row."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select, text

from chainwatch.db import connect
from chainwatch.model import Verdict
from chainwatch.scan import Scanner
from chainwatch.watch.state import LeaseLost, WatchState, alerts, deliveries, packages, versions
from chainwatch.watch.watcher import Watcher, host_id, pid_alive
from tests.helpers import BENIGN_INDEX, clipper_source
from tests.integration.test_postgres import postgres_url  # noqa: F401 - the server fixture
from tests.unit.test_watch import Clock, Recorder, Registry, make_watcher

T0 = 1_800_000_000.0
_dbs = itertools.count()


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'watch.db'}"
        return
    server: str = request.getfixturevalue("postgres_url")
    name = f"lease_{os.getpid()}_{next(_dbs)}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    try:
        yield server.rsplit("/", 1)[0] + "/" + name
    finally:
        admin.dispose()


def queued_state(url: str, count: int = 1, names: tuple[str, ...] = ("a",)) -> WatchState:
    state = WatchState(connect(url))
    state.add_packages(list(names), set())
    for name in names:
        state.record_poll(name, [{"version": f"1.0.{i}", "published": None, "publisher": "alice",
                                  "status": "queued"} for i in range(count)],
                          baseline=False, now=T0, next_due=T0 + 60)
    return state


def test_a_claimed_version_is_free_again_only_when_its_lease_runs_out(db_url: str) -> None:
    state = queued_state(db_url)
    first = state.claim_next("w1#1", T0, lease=30)
    assert first is not None and first.claim == "w1#1"
    assert state.claim_next("w2#1", T0 + 29, lease=30) is None  # held
    assert state.renew_version(first, T0 + 60)  # the heartbeat extends it
    assert state.claim_next("w2#1", T0 + 59, lease=30) is None
    second = state.claim_next("w2#1", T0 + 61, lease=30)  # w1 died: its lease ran out
    assert second is not None and second.pk == first.pk and second.claim == "w2#1"
    assert not state.renew_version(first, T0 + 120)  # w1's heartbeat now finds it gone


def test_only_the_holder_of_the_lease_finishes_and_alerts(db_url: str) -> None:
    state = queued_state(db_url)
    stale = state.claim_next("w1#1", T0, lease=30)
    assert stale is not None
    holder = state.claim_next("w2#1", T0 + 31, lease=30)
    assert holder is not None
    alert = ("release:a@1.0.0", "release", {"id": "release:a@1.0.0"})
    with pytest.raises(LeaseLost):  # w1 woke up late: its result is dropped, no alert
        state.finish(stale, "malicious", alert, ["hook"], T0 + 40)
    with pytest.raises(LeaseLost):
        state.scan_failed(stale, "boom", T0 + 100)
    with pytest.raises(LeaseLost):
        state.claim(stale, T0 + 100)
    with state.engine.connect() as conn:
        assert conn.execute(select(alerts.c.id)).all() == []
        assert conn.execute(select(versions.c.status, versions.c.attempts,
                                   versions.c.last_error)).one() == ("queued", 0, None)
    assert state.finish(holder, "malicious", alert, ["hook"], T0 + 45) is True
    with state.engine.connect() as conn:
        assert conn.execute(select(versions.c.status, versions.c.claimed_by,
                                   versions.c.lease_until)).one() == ("done", "w2#1", None)
        assert conn.execute(select(deliveries.c.alert_id)).scalars().all() == [alert[0]]
    assert state.claim_next("w3#1", T0 + 1000, lease=30) is None  # done is never claimed


def test_a_burst_alert_written_twice_at_once_is_created_once(db_url: str) -> None:
    state = queued_state(db_url)
    other = WatchState(connect(db_url))
    made = [state.add_alert("burst:alice:1", "burst", {}, ["hook"], T0),
            other.add_alert("burst:alice:1", "burst", {}, ["hook"], T0)]
    assert made == [True, False]
    with state.engine.connect() as conn:
        assert conn.execute(select(deliveries.c.sink)).scalars().all() == ["hook"]


def test_deliveries_are_claimed_once_per_sink(db_url: str) -> None:
    state = queued_state(db_url)
    state.add_alert("release:a@1.0.0", "release", {"id": "release:a@1.0.0"},
                    ["hook", "mail"], T0)
    one = state.claim_delivery("d1#1", T0, 30, ["hook", "mail"])
    two = state.claim_delivery("d2#1", T0, 30, ["hook", "mail"])
    assert one is not None and two is not None and {one.sink, two.sink} == {"hook", "mail"}
    assert state.claim_delivery("d3#1", T0, 30, ["hook", "mail"]) is None
    assert state.claim_delivery("d3#1", T0 + 31, 30, ["other"]) is None  # not its sink
    again = state.claim_delivery("d3#1", T0 + 31, 30, [one.sink])  # d1 died
    assert again is not None and again.pk == one.pk
    assert state.delivered(again, T0 + 32) is True
    assert state.delivered(one, T0 + 33) is False  # d1's late answer changes nothing
    assert state.delivered(two, T0 + 34) is True
    assert state.status(T0 + 40)["deliveries_pending"] == 0


def test_pollers_claim_disjoint_packages_and_a_late_poll_is_dropped(db_url: str) -> None:
    state = WatchState(connect(db_url))
    assert state.add_packages([f"p{i}" for i in range(10)], set()) == 10
    assert WatchState(connect(db_url)).add_packages(["p1", "p10"], set()) == 1  # a 2nd poller
    first = state.claim_due("p1#1", T0, 6, lease=30)
    second = state.claim_due("p2#1", T0, 6, lease=30)
    assert len(first) == 6 and len(second) == 5
    assert not {d.name for d in first} & {d.name for d in second}
    late = first[0]
    assert state.claim_due("p2#2", T0 + 31, 10, lease=30)[0].name == late.name
    with pytest.raises(LeaseLost):
        state.record_poll(late.name, [{"version": "1.0.0", "published": None,
                                       "publisher": None, "status": "queued"}],
                          baseline=False, now=T0 + 32, next_due=T0 + 90, claim=late.claim)
    assert state.known_versions(late.name) == set()  # nothing queued by the late poller


def test_two_claimers_racing_never_get_the_same_version(db_url: str) -> None:
    state = queued_state(db_url, count=40, names=("a", "b"))
    got: dict[str, list[int]] = {"r1": [], "r2": []}
    errors: list[BaseException] = []

    def drain(who: str) -> None:
        mine = WatchState(connect(db_url))
        try:
            for n in itertools.count():
                item = mine.claim_next(f"{who}#{n}", T0, lease=300)
                if item is None:
                    return
                got[who].append(item.pk)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=drain, args=(who,)) for who in got]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    assert not set(got["r1"]) & set(got["r2"])
    assert len(got["r1"]) + len(got["r2"]) == 80
    with state.engine.connect() as conn:
        assert conn.execute(select(versions.c.pk).where(versions.c.claimed_by.is_(None))).all() == []


def test_claims_of_dead_processes_on_this_host_are_freed(db_url: str) -> None:
    state = queued_state(db_url, count=2)
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # a pid that is gone
    host = host_id()
    assert not pid_alive(child.pid) and pid_alive(os.getpid())
    dead = state.claim_next(f"{host}:{child.pid}:ab#1", T0, lease=300)
    live = state.claim_next(f"{host}:{os.getpid()}:cd#1", T0, lease=300)
    assert dead is not None and live is not None
    with state.engine.begin() as conn:  # a claim on a package by the dead one as well
        conn.execute(packages.update().values(claimed_by=f"{host}:{child.pid}:ab#2",
                                              lease_until=T0 + 300))
    assert state.release_dead(host, pid_alive, T0 + 1) == 2
    again = state.claim_next("w9#1", T0 + 2, lease=30)
    assert again is not None and again.pk == dead.pk  # free at once, not in 300 s
    assert state.claim_next("w9#2", T0 + 2, lease=30) is None  # the live one's is kept
    assert state.release_dead("another-host/x", lambda pid: False, T0 + 3) == 0


def test_a_database_from_before_the_claim_columns_is_migrated(tmp_path: Path) -> None:
    import sqlite3

    url = f"sqlite:///{tmp_path / 'old.db'}"
    WatchState(connect(url)).engine.dispose()
    with sqlite3.connect(tmp_path / "old.db") as db:  # the tables as chainwatch 2026-12-03 made them
        for table in ("watch_packages", "watch_versions", "watch_deliveries"):
            db.execute(f"ALTER TABLE {table} DROP COLUMN claimed_by")
            db.execute(f"ALTER TABLE {table} DROP COLUMN lease_until")
        db.execute("INSERT INTO watch_versions (name, version, seen_at, status, attempts, "
                   "next_attempt) VALUES ('a', '1.0.1', 1.0, 'queued', 0, 0)")
    state = WatchState(connect(url))
    item = state.claim_next("w1#1", T0, lease=30)
    assert item is not None and (item.name, item.version) == ("a", "1.0.1")


# -- the heartbeat: a long scan keeps its version; a hung one lets it go after max_hold ----------
class SlowScanner(Scanner):
    """The real scanner, taking ``delay`` seconds longer (a big package)."""

    def __init__(self, inner: Scanner, delay: float) -> None:
        self.__dict__.update(inner.__dict__)
        self.delay = delay

    def scan(self, spec: str, against: str | None = None, *args: Any, **kw: Any) -> Verdict:
        time.sleep(self.delay)
        return super().scan(spec, against, *args, **kw)


def slow_world(tmp_path: Path, delay: float, **config: Any) -> tuple[Watcher, WatchState]:
    registry, sink, clock = Registry(), Recorder(), Clock()
    registry.publish("left-padder", "1.0.0", BENIGN_INDEX, time.time() - 90 * 86400)
    watcher = make_watcher(tmp_path, registry, sink, clock, **config)
    watcher.clock = time.time  # real time: the heartbeat runs on it
    watcher.watch(["left-padder"], hot=set())
    watcher.run_once()  # baseline
    registry.publish("left-padder", "1.0.1", BENIGN_INDEX + clipper_source(), time.time())
    assert watcher.poll("left-padder", False, True) == ["1.0.1"]
    watcher.scanner = SlowScanner(watcher.scanner, delay)
    return watcher, WatchState(connect(f"sqlite:///{tmp_path / 'watch.db'}"))


def test_a_long_scan_renews_its_lease_and_finishes(tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    watcher, other = slow_world(tmp_path, delay=2.0, lease=0.6, max_hold=60.0)
    rival: list[Any] = []
    probe = threading.Timer(1.5, lambda: rival.append(other.claim_next("w2#1", time.time(), 30)))
    probe.start()  # after 2.5 leases: only the heartbeat keeps the version held
    assert watcher.scan_once() == 1
    probe.join()
    assert rival == [None]
    assert "dropped" not in caplog.text
    assert other.status()["alerts"] == 1  # the release's
    with other.engine.connect() as conn:
        row = conn.execute(select(versions.c.status, versions.c.claimed_by)
                           .where(versions.c.version == "1.0.1")).one()
    assert row.status == "done" and row.claimed_by.startswith(watcher.worker)


def test_a_scan_that_outlives_max_hold_loses_its_version(tmp_path: Path,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    watcher, other = slow_world(tmp_path, delay=2.5, lease=0.6, max_hold=0.5,
                                scan_backoff=0.1)
    rival: list[Any] = []
    probe = threading.Timer(1.8, lambda: rival.append(other.claim_next("w2#1", time.time(), 30)))
    probe.start()
    assert watcher.scan_once() == 1
    probe.join()
    (taken,) = rival
    assert taken is not None and taken.version == "1.0.1"  # the lease lapsed: w2 has it
    assert other.status()["alerts"] == 0  # the late scan's result was dropped
    assert "is no longer renewed" in caplog.text and "dropped" in caplog.text
    assert "was lost" not in caplog.text
    assert other.finish(taken, "malicious", ("release:left-padder@1.0.1", "release", {}),
                        [], time.time()) is True


@pytest.mark.parametrize("args, mentions", [
    (["--role", "bogus"], "--role"),
    (["--lease", "0s"], "--lease"),
    (["--lease", "2h"], "--lease"),
    (["--lease", "soon"], "duration"),
    (["--scan-backoff", "2h"], "--scan-backoff"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else v)
def test_bad_role_options_are_one_line_and_exit_2(tmp_path: Path, args: list[str],
                                                  mentions: str) -> None:
    from tests.cli_runner import chainwatch, clean_env
    from tests.hostile.test_cli_sweep import CLOSED, assert_one_error

    done = chainwatch("watch", "--once", "--role", "scanner", "--db",
                      f"sqlite:///{tmp_path / 'w.db'}", *args,
                      env=clean_env(tmp_path, npm_config_registry=CLOSED), cwd=tmp_path,
                      real=True)
    assert_one_error(done, mentions)


def test_a_scanner_needs_no_watchlist_and_a_poller_does(tmp_path: Path) -> None:
    from tests.cli_runner import chainwatch, clean_env
    from tests.hostile.test_cli_sweep import CLOSED, assert_one_error

    env = clean_env(tmp_path, npm_config_registry=CLOSED)
    db = f"sqlite:///{tmp_path / 'w.db'}"
    done = chainwatch("watch", "--once", "--role", "scanner", "--role", "deliverer", "--db", db,
                      env=env, cwd=tmp_path, real=True)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"polled": 0, "scanned": 0, "delivered": 0}
    assert_one_error(chainwatch("watch", "--once", "--role", "poller", "--db", db, env=env,
                                cwd=tmp_path, real=True), "nothing to watch")


def test_a_poller_alone_keeps_no_packuments(tmp_path: Path) -> None:
    """Packuments are kept for the scan only by a process that scans: a poller alone would
    keep one for every package with a queued version, without bound."""
    registry, sink, clock = Registry(), Recorder(), Clock()
    registry.publish("left-padder", "1.0.0", BENIGN_INDEX, T0 - 90 * 86400)
    watcher = make_watcher(tmp_path, registry, sink, clock)
    watcher.watch(["left-padder"], hot=set())
    watcher.run_once(["poller"])
    registry.publish("left-padder", "1.0.1", BENIGN_INDEX + "// 1\n", T0 + 30)
    clock.now = T0 + 120
    assert watcher.run_once(["poller"]) == {"polled": 1, "scanned": 0, "delivered": 0}
    assert watcher.state.status(clock.now)["queued"] == 1 and watcher._docs == {}
