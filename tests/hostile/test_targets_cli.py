"""scan targets on the command line, against a loopback registry (issue 12 C): a removed
known-bad version is malicious (exit 1), a range says what it chose, a malformed name is one
line and exit 2 before any request."""

from __future__ import annotations

import hashlib
import json
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import unquote

import pytest

from tests.cli_runner import chainwatch, clean_env
from tests.helpers import make_tgz, manifest


class Handler(BaseHTTPRequestHandler):
    docs: ClassVar[dict[str, dict[str, Any]]] = {}
    blobs: ClassVar[dict[str, bytes]] = {}
    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.seen.append(self.path)
        path = unquote(self.path)
        body: bytes | None = None
        if path in self.blobs:
            body = self.blobs[path]
        elif path[1:] in self.docs:
            body = json.dumps(self.docs[path[1:]]).encode()
        self.send_response(200 if body is not None else 404)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body if body is not None else b'{"error":"not found"}')

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def registry() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    Handler.seen.clear()
    Handler.docs.clear()
    Handler.blobs.clear()
    for name, versions, latest in [("debug", ["4.4.1", "4.4.3"], "4.4.3"),
                                   ("express", ["4.21.1", "4.21.2", "5.1.0"], "5.1.0")]:
        doc: dict[str, Any] = {"name": name, "dist-tags": {"latest": latest}, "versions": {}}
        for v in versions:
            path = f"/{name}/-/{name}-{v}.tgz"
            Handler.blobs[path] = make_tgz({"package.json": manifest(name, v),
                                            "index.js": "module.exports = 1;\n"})
            doc["versions"][v] = {"name": name, "version": v, "dist": {
                "tarball": base + path[1:],
                "shasum": hashlib.sha1(Handler.blobs[path]).hexdigest()}}
        Handler.docs[name] = doc
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield base
    server.shutdown()
    server.server_close()


def run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = clean_env(tmp_path, NPM_CONFIG_USERCONFIG=str(tmp_path / "npmrc"))
    return chainwatch(*args, env=env, cwd=tmp_path)


def test_removed_known_bad_version_is_malicious_exit_1(tmp_path: Path, registry: str) -> None:
    done = run(tmp_path, "scan", "debug@4.4.2", "--registry", registry, "--format", "json",
               "--no-remember")
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    result = json.loads(done.stdout)
    text = json.dumps(result)
    assert '"malicious"' in text and "CW-TARBALL-GONE" in text and "tarball is gone" in text
    assert not any(p.endswith(".tgz") for p in Handler.seen)
    table = run(tmp_path, "scan", "debug@4.4.2", "--registry", registry, "--no-remember")
    assert table.returncode == 1 and "MALICIOUS" in table.stdout
    assert "tarball is gone" in table.stdout  # a person sees why there is no diff


def test_range_target_names_the_chosen_version(tmp_path: Path, registry: str) -> None:
    done = run(tmp_path, "scan", "express@^4", "--registry", registry, "--no-remember")
    assert done.returncode == 0, done.stderr
    assert "express@^4 resolved to express@4.21.2" in done.stderr
    assert "latest is 5.1.0" in done.stderr
    quiet = run(tmp_path, "scan", "express@^4", "--registry", registry, "--no-remember", "-q")
    assert quiet.returncode == 0 and "resolved to" not in quiet.stderr


@pytest.mark.parametrize("spec", ["@", "@scope", "@scope/", "Bad Name@1", "_private@1.0.0",
                                  "x\x1b[31m@1"])
def test_malformed_name_is_one_line_exit_2(tmp_path: Path, registry: str, spec: str) -> None:
    done = run(tmp_path, "scan", spec, "--registry", registry)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "invalid package name" in lines[0], done.stderr
    assert "\x1b" not in done.stderr and "no such package" not in done.stderr
    assert Handler.seen == []


def test_unknown_dist_tag_is_exit_2_with_the_tags(tmp_path: Path, registry: str) -> None:
    done = run(tmp_path, "scan", "express@nope", "--registry", registry)
    assert done.returncode == 2
    assert "no dist-tag 'nope'" in done.stderr and "latest" in done.stderr
