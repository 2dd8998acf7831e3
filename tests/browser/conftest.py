"""A real headless Chromium (Debian's ``chromium`` package) driven by Playwright, against the
pages served by uvicorn on loopback over a SQLite database the test fills.

Skips with the reason when Playwright or the browser is missing; under ``.ci/run``
(CHAINWATCH_REQUIRE_PARTS=1), which installs both, it fails instead.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from chainwatch.db import connect
from chainwatch.serve.auth import Auth
from tests.helpers import missing_part
from tests.serve_pages_support import fill

TOKEN = "browser-test-token-0123456789abcdef"
CHROMIUM = os.environ.get("CHAINWATCH_CHROMIUM", "/usr/bin/chromium")


def stored_scan(engine: Engine) -> Any:
    """A scan function that stores a verdict the way a registry scan does (no network: the
    browser tests check the pages' side of a scan, tests of serve/scans.py the scanner's)."""
    from sqlalchemy import insert

    from chainwatch.serve.scans import ScanRequest
    from chainwatch.verdicts import verdicts

    def scan(request: ScanRequest) -> tuple[str, dict[str, Any]]:
        time.sleep(0.5)  # long enough for the status page to be seen
        name, version = str(request.target).rsplit("@", 1)
        key = f"sha512-scanned-{name}-{version}"
        doc = {"schema": "chainwatch.scan/1", "package": name, "version": version,
               "baseline": None, "verdict": "benign", "score": 0,
               "explanation": "no new capability", "integrity": key, "findings": [],
               "capabilities": {"added": [], "removed": [], "present": []},
               "metadata_signals": []}
        with engine.begin() as conn:
            conn.execute(insert(verdicts).values(
                key=key, package=name, version=version, integrity=key, level="benign", score=0,
                baseline=None, explanation="", top_rule=None, top_message=None,
                scanned_at=time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
                elapsed_s=0.5, document=json.dumps(doc)))
        return key, doc

    return scan


def make_app(engine: Engine, auth: Auth) -> Any:
    """The real application (API, pages, the guard that adds the security headers) with a
    scan pool over :func:`stored_scan`."""
    from chainwatch.serve.app import create_app
    from chainwatch.serve.scans import ScanPool

    return create_app(engine, token=auth.token, auth=auth,
                      scans=ScanPool(stored_scan(engine), workers=1))


@dataclass
class Server:
    url: str
    engine: Engine
    keys: dict[str, str]
    thread: threading.Thread
    server: Any
    extra: dict[str, Any] = field(default_factory=dict)


def _serve(tmp_path_factory: pytest.TempPathFactory, auth: Auth) -> Iterator[Server]:
    import uvicorn

    engine = connect(f"sqlite:///{tmp_path_factory.mktemp('serve') / 'chainwatch.db'}")
    keys = fill(engine)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(make_app(engine, auth), log_level="warning",
                                           lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("uvicorn did not start on loopback")
        time.sleep(0.05)
    yield Server(f"http://127.0.0.1:{port}", engine, keys, thread, server)
    server.should_exit = True
    thread.join(10)
    sock.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from _serve(tmp_path_factory, Auth(TOKEN))


@pytest.fixture(scope="module")
def served_open(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``chainwatch serve`` as it starts by default: no token (loopback only)."""
    yield from _serve(tmp_path_factory, Auth(None))


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError:
        missing_part("the playwright package is not installed (pip install -e '.[dev]')")
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        missing_part(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set "
                     "CHAINWATCH_CHROMIUM)")
    with sync_playwright() as p:
        try:
            b = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        except Error as exc:
            missing_part(f"Chromium at {CHROMIUM} does not start: {str(exc).splitlines()[0]}")
        yield b
        b.close()
