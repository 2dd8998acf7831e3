"""A real registry on loopback for integration tests: Verdaccio 6.8.0, installed once into the
test cache (node-fetch overridden to 2.7.0 for Node 20), started with no uplinks, with a user
whose token the real npm client publishes with."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.helpers import missing_part
from tests.integration.conftest import FIXTURE_CACHE

VERDACCIO = FIXTURE_CACHE / "verdaccio-6.8.0"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_up(url: str, tries: int = 150) -> None:
    for _ in range(tries):
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def npm(args: list[str], cwd: Path, home: Path,
        cache: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NPM_CONFIG_USERCONFIG": str(home / ".npmrc"),
           "npm_config_cache": str(cache or home / "npm-cache"),
           "npm_config_update_notifier": "false"}
    return subprocess.run([shutil.which("npm") or "npm", *args, "--no-audit", "--no-fund",
                           "--ignore-scripts"], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300, check=False)


@dataclass
class Verdaccio:
    root: Path
    registry: str
    home: Path
    process: subprocess.Popen[bytes]
    token: str

    def publish(self, name: str, version: str, files: dict[str, str]) -> None:
        """Publish an (inert) package with the real npm client."""
        folder = self.root / "src" / f"{name.replace('/', '__')}-{version}"
        folder.mkdir(parents=True)
        (folder / "package.json").write_text(json.dumps(
            {"name": name, "version": version, "main": "index.js"}))
        for path, text in files.items():
            (folder / path).write_text(text)
        done = npm(["publish", "--registry", self.registry], folder, self.home)
        assert done.returncode == 0, done.stderr

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def start_verdaccio(root: Path) -> Verdaccio:
    if shutil.which("npm") is None or shutil.which("node") is None:
        missing_part("npm/node not installed")
    if not (VERDACCIO / "node_modules" / ".bin" / "verdaccio").exists():
        VERDACCIO.mkdir(parents=True, exist_ok=True)
        (VERDACCIO / "package.json").write_text(json.dumps({
            "name": "cw-verdaccio", "private": True, "dependencies": {"verdaccio": "6.8.0"},
            "overrides": {"node-fetch": "2.7.0"}}))
        done = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--ignore-scripts"],
                              cwd=VERDACCIO, capture_output=True, text=True, timeout=600,
                              check=False)
        if done.returncode != 0:
            pytest.skip(f"could not install Verdaccio: {done.stderr[-300:]}")
    (root / "config.yaml").write_text(
        "storage: ./storage\nauth:\n  htpasswd:\n    file: ./htpasswd\n    max_users: 10\n"
        "uplinks: {}\npackages:\n"
        # a private scope: only a client that passes its token through the proxy reads it
        "  '@private/*':\n    access: $authenticated\n    publish: $authenticated\n"
        "  '**':\n    access: $all\n    publish: $authenticated\n"
        "log: { type: stdout, format: pretty, level: error }\n")
    port = free_port()
    registry = f"http://127.0.0.1:{port}/"
    process = subprocess.Popen(
        ["node", str(VERDACCIO / "node_modules" / ".bin" / "verdaccio"), "--config",
         str(root / "config.yaml"), "--listen", f"127.0.0.1:{port}"], cwd=root,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_up(registry + "-/ping")
        token = httpx.put(registry + "-/user/org.couchdb.user:tester",
                          json={"name": "tester", "password": "tester-pass-123"}).json()["token"]
    except Exception:
        process.terminate()
        raise
    home = root / "home"
    home.mkdir()
    (home / ".npmrc").write_text(f"//127.0.0.1:{port}/:_authToken={token}\n")
    return Verdaccio(root, registry, home, process, token)
