"""``chainwatch watch`` against a real registry (Verdaccio on loopback) and a real webhook receiver.

The test publishes a benign v1 with the real npm client, starts the watcher as a user would, then
publishes a compromised v2 (an inert replica of the September 2025 clipper) and waits for the
webhook. Then it kills the watcher with SIGKILL, publishes while it is down, restarts it, and
checks that nothing was missed and nothing was sent twice.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import BENIGN_INDEX, clipper_source
from tests.integration.verdaccio import Verdaccio, free_port, start_verdaccio, wait_up


class Receiver:
    """A webhook endpoint that records every alert it is sent."""

    def __init__(self) -> None:
        self.alerts: list[dict[str, Any]] = []
        received = self.alerts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                received.append({**json.loads(body), "_at": time.time(),
                                 "_key": self.headers.get("idempotency-key")})
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, alert_id: str, timeout: float = 90.0) -> dict[str, Any]:
        deadline = time.time() + timeout
        while time.time() < deadline:
            for alert in self.alerts:
                if alert["id"] == alert_id:
                    return alert
            time.sleep(0.2)
        raise AssertionError(f"no alert {alert_id} within {timeout} s; got "
                             f"{[a['id'] for a in self.alerts]}")


@pytest.fixture()
def setup(tmp_path: Path) -> Iterator[tuple[Verdaccio, Receiver, Path]]:
    server = start_verdaccio(tmp_path)
    receiver = Receiver()
    try:
        yield server, receiver, tmp_path
    finally:
        receiver.server.shutdown()
        server.stop()


def _start(server: Verdaccio, receiver: Receiver, root: Path, metrics: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "CHAINWATCH_DATA_DIR": str(root), "CHAINWATCH_CACHE_DIR": str(root),
           "NPM_CONFIG_USERCONFIG": str(server.home / ".npmrc")}
    return subprocess.Popen(
        [sys.executable, "-m", "chainwatch", "watch", "--packages", str(root / "watch.txt"),
         "--registry", server.registry, "--webhook", receiver.url, "--interval", "1s",
         "--hot-interval", "1s", "--db", f"sqlite:///{root / 'watch.db'}",
         "--metrics-port", str(metrics), "--log-format", "json"],
        env=env, stdout=subprocess.DEVNULL, stderr=open(root / "watch.log", "ab"))


def _status(root: Path) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "chainwatch", "watch", "--status", "--db",
                          f"sqlite:///{root / 'watch.db'}"], capture_output=True, text=True,
                         check=True)
    return dict(json.loads(out.stdout))


def _wait_polled(root: Path, packages: int) -> None:
    for _ in range(150):
        if (root / "watch.db").exists():
            try:
                status = _status(root)
            except subprocess.CalledProcessError:
                status = {}
            if status.get("packages") == packages and status.get("last_poll_age_s") is not None \
                    and status.get("due_now") == 0:
                return
        time.sleep(0.2)
    raise AssertionError("the watcher never finished its first poll")


def test_publish_alert_kill_restart(setup: tuple[Verdaccio, Receiver, Path]) -> None:
    server, receiver, root = setup
    server.publish("color-tint", "1.0.0", {"index.js": BENIGN_INDEX})
    server.publish("size-tint", "1.0.0", {"index.js": BENIGN_INDEX})
    (root / "watch.txt").write_text("color-tint\nsize-tint\n")
    metrics = free_port()
    watcher = _start(server, receiver, root, metrics)
    try:
        _wait_polled(root, 2)
        published = time.time()
        server.publish("color-tint", "1.0.1", {"index.js": BENIGN_INDEX + clipper_source()})
        alert = receiver.wait_for("release:color-tint@1.0.1")
        assert alert["_at"] - published < 60  # the target with polling defaults
        assert alert["verdict"] == "malicious" and alert["baseline"] == "1.0.0"
        assert alert["_key"] == alert["id"] and alert["evidence"]
        wait_up(f"http://127.0.0.1:{metrics}/metrics")
        text = httpx.get(f"http://127.0.0.1:{metrics}/metrics").text
        # the two v1.0.0 were published moments before watching began: scanned too
        count = next(line for line in text.splitlines()
                     if line.startswith("chainwatch_watch_publish_to_verdict_seconds_count"))
        assert float(count.split()[-1]) == 3.0

        watcher.send_signal(signal.SIGKILL)
        watcher.wait(timeout=10)
        # published while the watcher is down: found after the restart
        server.publish("size-tint", "1.0.1", {"index.js": BENIGN_INDEX + clipper_source()})
        server.publish("color-tint", "1.0.2", {"index.js": BENIGN_INDEX + "\n// docs\n"})
        watcher = _start(server, receiver, root, free_port())
        receiver.wait_for("release:size-tint@1.0.1")
        deadline = time.time() + 60
        while _status(root)["versions_seen"] < 5 and time.time() < deadline:
            time.sleep(0.3)
        time.sleep(3)  # a few more polls: nothing must be re-sent
        ids = [a["id"] for a in receiver.alerts]
        assert sorted(ids) == ["release:color-tint@1.0.1", "release:size-tint@1.0.1"], ids
        status = _status(root)
        assert status["versions_seen"] == 5 and status["queued"] == 0
        assert status["deliveries_pending"] == 0 and status["alerts"] == 2
    finally:
        watcher.terminate()
        watcher.wait(timeout=15)
    log = (root / "watch.log").read_text()
    assert all(json.loads(line)["level"] for line in log.splitlines() if line.startswith("{"))


class Faulty:
    """A loopback proxy in front of Verdaccio that can answer 503, or 429 with Retry-After."""

    def __init__(self, upstream: str) -> None:
        self.mode = "pass"
        self.faults = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if outer.mode != "pass":
                    outer.faults += 1
                    status = 429 if outer.mode == "429" else 503
                    self.send_response(status)
                    if status == 429:
                        self.send_header("Retry-After", "1")
                    self.send_header("content-length", "0")
                    self.end_headers()
                    return
                r = httpx.get(upstream.rstrip("/") + self.path,
                              headers={k: v for k, v in self.headers.items()
                                       if k.lower() in ("accept", "if-none-match",
                                                        "authorization")})
                self.send_response(r.status_code)
                for key in ("content-type", "etag"):
                    if key in r.headers:
                        self.send_header(key, r.headers[key])
                self.send_header("content-length", str(len(r.content)))
                self.end_headers()
                self.wfile.write(r.content)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_registry_errors_slow_the_watcher_without_losing_a_version(
        setup: tuple[Verdaccio, Receiver, Path]) -> None:
    server, receiver, root = setup
    server.publish("color-tint", "1.0.0", {"index.js": BENIGN_INDEX})
    (root / "watch.txt").write_text("color-tint\n")
    faulty = Faulty(server.registry)
    env = {**os.environ, "CHAINWATCH_DATA_DIR": str(root), "CHAINWATCH_CACHE_DIR": str(root),
           "NPM_CONFIG_USERCONFIG": str(server.home / ".npmrc")}
    watcher = subprocess.Popen(
        [sys.executable, "-m", "chainwatch", "watch", "--packages", str(root / "watch.txt"),
         "--registry", faulty.url, "--webhook", receiver.url, "--interval", "1s",
         "--hot-interval", "1s", "--db", f"sqlite:///{root / 'watch.db'}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_polled(root, 1)
        for mode in ("503", "429"):
            faulty.mode = mode
            before = faulty.faults
            server.publish("color-tint", "1.0.1" if mode == "503" else "1.0.2",
                           {"index.js": BENIGN_INDEX + clipper_source()
                            + ("" if mode == "503" else "\n// again\n")})
            time.sleep(6)
            # after the 503s the watcher backs off: its next ask may come later than 6 s
            deadline = time.time() + 30
            while faulty.faults <= before and time.time() < deadline:
                time.sleep(0.5)
            assert faulty.faults > before  # the watcher kept asking, and got errors
            assert faulty.faults - before < 40  # … while backing off, not hammering
            faulty.mode = "pass"
        receiver.wait_for("release:color-tint@1.0.1")
        receiver.wait_for("release:color-tint@1.0.2")
        time.sleep(2)
        assert sorted(a["id"] for a in receiver.alerts) == [
            "release:color-tint@1.0.1", "release:color-tint@1.0.2"]
    finally:
        watcher.terminate()
        watcher.wait(timeout=15)
        faulty.server.shutdown()
