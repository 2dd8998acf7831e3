"""Several ``chainwatch watch --role`` processes on one PostgreSQL database (issue 16).

One poller queues 200 fresh versions from a loopback registry; two scanner processes and two
deliverer processes share the queue; one scanner is SIGKILLed while it holds a version in the
middle of its scan. Every version must be scanned to completion exactly once (the scanners' own
"name@version: level" lines, written only after the finish committed, and the rows), its
verdict stored once, and every alert POSTed to the loopback webhook exactly once.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, func, select, text

from chainwatch.db import connect
from chainwatch.verdicts import verdicts
from chainwatch.watch.state import WatchState, alerts, deliveries, versions
from tests.helpers import BENIGN_INDEX, clipper_source, make_tgz, manifest
from tests.integration.test_postgres import postgres_url  # noqa: F401 - the server fixture

PACKAGES = 40
NEW_VERSIONS = 5  # 1.0.1 … 1.0.5 of each package: 200 queued versions
COMPROMISED = {f"cw-roles-{i}" for i in range(0, PACKAGES, 8)}  # their 1.0.5 carries a clipper
FINISHED = re.compile(r" INFO (cw-roles-\d+@1\.0\.\d): (benign|suspicious|malicious) \(score")


class Server:
    """A loopback HTTP server: a static npm registry and a webhook that counts every POST."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.posts: list[tuple[str, str]] = []  # (Idempotency-Key, alert id)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = outer.files.get(self.path.lstrip("/"))
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Type", "application/json" if body is None or not
                                 self.path.endswith(".tgz") else "application/octet-stream")
                body = body if body is not None else b'{"error": "not found"}'
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                alert = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.posts.append((self.headers.get("Idempotency-Key", ""), alert["id"]))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"

    def publish(self, name: str, releases: list[tuple[str, str, float]]) -> None:
        """A packument for ``name`` with (version, index.js, publish time) releases."""
        doc: dict[str, Any] = {"name": name, "dist-tags": {"latest": releases[-1][0]},
                               "time": {}, "versions": {}}
        for version, code, when in releases:
            tgz = make_tgz({"package.json": manifest(name=name, version=version),
                            "index.js": code})
            path = f"{name}/-/{name}-{version}.tgz"
            self.files[path] = tgz
            doc["time"][version] = datetime.fromtimestamp(when, UTC).isoformat()
            doc["versions"][version] = {
                "name": name, "version": version,
                "_npmUser": {"name": "alice", "email": "alice@example.invalid"},
                "dist": {"tarball": self.url + path, "integrity": "sha512-" + base64.b64encode(
                    hashlib.sha512(tgz).digest()).decode()}}
        self.files[name] = json.dumps(doc).encode()

    def __enter__(self) -> Server:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(params=["postgres", "sqlite"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh PostgreSQL database on the throwaway server, or a SQLite file (SQLite has no
    row locks: the roles share it through its single writer lock and conditional UPDATEs)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'watch.db'}"
        return
    server: str = request.getfixturevalue("postgres_url")
    name = f"roles_{os.getpid()}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {name}"))
        conn.execute(text(f"CREATE DATABASE {name}"))
    try:
        yield server.rsplit("/", 1)[0] + "/" + name
    finally:
        admin.dispose()


def held_by(state: WatchState, pid: int) -> list[tuple[int, str, str]]:
    """Versions the process ``pid`` holds right now, in the middle of their scan."""
    with state.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(
            select(versions.c.pk, versions.c.name, versions.c.version)
            .where(versions.c.status == "queued", versions.c.lease_until > time.time(),
                   versions.c.claimed_by.like(f"%:{pid}:%"))).all()]


def test_two_scanners_one_killed_every_version_scanned_and_alerted_once(
        tmp_path: Path, database: str) -> None:
    old, fresh = time.time() - 90 * 86400, time.time() - 600
    with Server() as server:
        clipper = clipper_source()
        for i in range(PACKAGES):
            name = f"cw-roles-{i}"
            server.publish(name, [("1.0.0", BENIGN_INDEX, old)] + [
                (f"1.0.{n}", (clipper if name in COMPROMISED and n == NEW_VERSIONS
                              else BENIGN_INDEX + f"// {n}\n"), fresh + n)
                for n in range(1, NEW_VERSIONS + 1)])
        watchlist = tmp_path / "watchlist.txt"
        watchlist.write_text("".join(f"cw-roles-{i}\n" for i in range(PACKAGES)))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "NO_COLOR": "1"}

        def chainwatch(role: str, *extra: str, log: str) -> subprocess.Popen[bytes]:
            cmd = [sys.executable, "-m", "chainwatch", "watch", "--role", role, "--db", database,
                   "--registry", server.url, "--cache-dir", str(tmp_path / f"cache-{log}"),
                   "--webhook", server.url + "hook", "--lease", "6s", "--scan-backoff", "1s",
                   # a loaded machine may let a lease lapse now and then: a scan taken over
                   # is still finished once, but must not run out of attempts
                   "--max-scan-attempts", "10",
                   *extra]
            with (tmp_path / f"{log}.log").open("wb") as out:
                return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)

        poller = chainwatch("poller", "--once", "--packages", str(watchlist), log="poller")
        assert poller.wait(timeout=300) == 0, (tmp_path / "poller.log").read_text()
        state = WatchState(connect(database))
        assert state.status()["queued"] == PACKAGES * NEW_VERSIONS

        scanners = [chainwatch("scanner", log=f"scanner{n}") for n in (1, 2)]
        deliverers = [chainwatch("deliverer", log=f"deliverer{n}") for n in (1, 2)]
        victim, survivor = scanners
        killed: tuple[int, str, str] | None = None
        deadline = time.monotonic() + 600
        try:
            while killed is None and time.monotonic() < deadline:
                time.sleep(0.05)
                if state.status()["queued"] > PACKAGES * NEW_VERSIONS - 20:
                    continue  # let both get going first
                victim.send_signal(signal.SIGSTOP)  # frozen: it cannot finish behind our back
                held = held_by(state, victim.pid)
                if held:
                    victim.kill()
                    killed = held[0]
                else:
                    victim.send_signal(signal.SIGCONT)
            assert killed is not None, "the scanner never held a version"
            assert victim.wait(timeout=30) == -signal.SIGKILL
            while time.monotonic() < deadline:
                status = state.status()
                if status["queued"] == 0 and status["deliveries_pending"] == 0:
                    break
                assert survivor.poll() is None, (tmp_path / "scanner2.log").read_text()
                time.sleep(0.5)
        finally:
            for proc in [*scanners, *deliverers]:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGCONT)
                    proc.terminate()
            for proc in [*scanners, *deliverers]:
                proc.wait(timeout=60)

        logs = {n: (tmp_path / f"{n}.log").read_text(errors="replace")
                for n in ("scanner1", "scanner2", "deliverer1", "deliverer2")}
        status = state.status()
        assert status["queued"] == 0 and status["deliveries_pending"] == 0, status
        assert "Traceback" not in "".join(logs.values())

        # every version scanned to completion exactly once, by one scanner or the other
        finished = collections.Counter(m.group(1) for n in ("scanner1", "scanner2")
                                       for m in FINISHED.finditer(logs[n]))
        expected = {f"cw-roles-{i}@1.0.{n}" for i in range(PACKAGES)
                    for n in range(1, NEW_VERSIONS + 1)}
        missing = expected - set(finished)
        if missing:  # say what became of them: their rows and every log line about them
            with state.engine.connect() as conn:
                lost = conn.execute(select(versions).where(
                    (versions.c.name + "@" + versions.c.version).in_(missing))).mappings().all()
            pytest.fail(f"never finished: {[dict(r) for r in lost]}; " + "\n".join(
                f"{n}: {line}" for n in logs for line in logs[n].splitlines()
                if any(m in line for m in missing)))
        assert [spec for spec, times in finished.items() if times != 1] == []
        assert finished.total() == PACKAGES * NEW_VERSIONS
        with state.engine.connect() as conn:
            rows = conn.execute(select(versions.c.name, versions.c.version, versions.c.status,
                                       versions.c.attempts, versions.c.claimed_by)
                                .where(versions.c.status != "baseline")).all()
            stored = conn.execute(select(func.count()).select_from(verdicts)
                                  .where(verdicts.c.package.like("cw-roles-%"))).scalar_one()
            alert_ids = set(conn.execute(select(alerts.c.id)).scalars())
            sent = conn.execute(select(deliveries.c.sink, func.count())
                                .where(deliveries.c.status == "sent")
                                .group_by(deliveries.c.sink)).all()
        assert len(rows) == PACKAGES * NEW_VERSIONS
        assert {r.status for r in rows} == {"done"}
        assert stored == PACKAGES * NEW_VERSIONS  # one stored verdict per version
        # the version the killed scanner held: taken over and finished by the other one
        _pk, name, version = killed
        (taken,) = [r for r in rows if (r.name, r.version) == (name, version)]
        # (frozen after its claim: its attempt counted, or not yet, then the survivor's)
        assert taken.attempts in (1, 2) and f":{survivor.pid}:" in taken.claimed_by
        assert f"{name}@{version}:" not in logs["scanner1"]

        # every alert POSTed once, with its id as the idempotency key; the log sink once too
        assert {f"release:{n}@1.0.{NEW_VERSIONS}" for n in COMPROMISED} <= alert_ids
        posted = collections.Counter(alert for _, alert in server.posts)
        assert set(posted) == alert_ids
        assert [a for a, times in posted.items() if times != 1] == []
        assert all(key == alert for key, alert in server.posts)
        assert {sink: n for sink, n in sent if sink == "log"} == {"log": len(alert_ids)}
        logged = logs["deliverer1"].count(" ALERT ") + logs["deliverer2"].count(" ALERT ")
        assert logged == len(alert_ids)
