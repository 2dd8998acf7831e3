"""The real npm client installs through the chainwatch proxy in front of the live registry."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.live


@pytest.fixture()
def proxy_url(tmp_path: Path) -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "CHAINWATCH_DATA_DIR": str(tmp_path), "CHAINWATCH_CACHE_DIR": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-m", "chainwatch", "proxy", "--listen",
                             f"127.0.0.1:{port}", "--min-age", "1000d"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    try:
        for _ in range(100):
            try:
                if httpx.get(url + "-/chainwatch/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def npm(args: list[str], cwd: Path, registry: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([shutil.which("npm") or "npm", *args, "--registry", registry,
                           "--ignore-scripts", "--no-audit", "--no-fund"], cwd=cwd,
                          capture_output=True, text=True, timeout=300, check=False)


def test_npm_gets_the_newest_allowed_version_and_never_a_blocked_one(proxy_url: str,
                                                                       tmp_path: Path) -> None:
    (tmp_path / "package.json").write_text(json.dumps({"name": "t", "version": "1.0.0"}))
    ok = npm(["install", "chalk"], tmp_path, proxy_url)
    assert ok.returncode == 0, ok.stderr
    installed = json.loads((tmp_path / "node_modules" / "chalk" / "package.json").read_text())
    assert int(installed["version"].split(".")[0]) < 6  # chalk 6 is younger than 1000 days
    refused = npm(["install", "chalk@6"], tmp_path, proxy_url)
    assert refused.returncode != 0
    decisions = httpx.get(proxy_url + "-/chainwatch/decisions").json()["decisions"]
    assert any(d["package"] == "chalk" and d["rule"] == "min-age" for d in decisions)
