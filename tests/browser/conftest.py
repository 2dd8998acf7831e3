"""A real headless Chromium (Debian's ``chromium`` package) driven by Playwright, against the
pages served by uvicorn on loopback over a SQLite database the test fills.

Skips with the reason when Playwright or the browser is missing; under ``.ci/run``
(CHAINWATCH_REQUIRE_PARTS=1), which installs both, it fails instead.
"""

from __future__ import annotations

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


def make_app(engine: Engine, auth: Auth) -> Any:
    """The real application (API, pages, the guard that adds the security headers); no scan is
    submitted here, so its scan pool is never made."""
    from chainwatch.serve.app import create_app

    return create_app(engine, token=auth.token, auth=auth)


@dataclass
class Server:
    url: str
    engine: Engine
    keys: dict[str, str]
    thread: threading.Thread
    server: Any
    extra: dict[str, Any] = field(default_factory=dict)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    import uvicorn

    engine = connect(f"sqlite:///{tmp_path_factory.mktemp('serve') / 'chainwatch.db'}")
    keys = fill(engine)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(make_app(engine, Auth(TOKEN)), log_level="warning",
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
