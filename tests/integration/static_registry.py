"""A static npm registry on loopback: packuments (with ETags, ``304`` on a match) and tarballs
of what the test or benchmark has published. Enough for ``watch`` and ``scan`` from other
processes (Dask workers), without Verdaccio."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

from tests.helpers import make_tgz, manifest


class StaticRegistry:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        #: name → version → (tarball, publish time ISO, publisher)
        self.packages: dict[str, dict[str, tuple[bytes, str, str]]] = {}
        self.requests = 0
        registry = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                registry.requests += 1
                status, body, etag = registry.answer(unquote(self.path.lstrip("/")),
                                                     self.headers.get("If-None-Match"))
                self.send_response(status)
                if etag:
                    self.send_header("ETag", etag)
                self.send_header("Content-Type", "application/octet-stream"
                                 if self.path.endswith(".tgz") else "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def publish(self, name: str, version: str, files: dict[str, str | bytes], when: float,
                publisher: str = "alice") -> bytes:
        """Publish ``files`` (a package.json is added when missing) as ``name@version``."""
        files = {"package.json": manifest(name=name, version=version), **files}
        tgz = make_tgz(files)
        with self.lock:
            self.packages.setdefault(name, {})[version] = (
                tgz, datetime.fromtimestamp(when, UTC).isoformat(), publisher)
        return tgz

    def packument(self, name: str) -> dict[str, Any]:
        base = name.rsplit("/", 1)[-1]
        with self.lock:
            versions = dict(self.packages[name])
        return {"name": name, "dist-tags": {"latest": list(versions)[-1]},
                "time": {v: t for v, (_, t, _) in versions.items()},
                "versions": {v: {"name": name, "version": v,
                                 "_npmUser": {"name": who, "email": f"{who}@example.invalid"},
                                 "dist": {"tarball": f"{self.url}{name}/-/{base}-{v}.tgz",
                                          "integrity": "sha512-" + base64.b64encode(
                                              hashlib.sha512(tgz).digest()).decode()}}
                             for v, (tgz, _, who) in versions.items()}}

    def answer(self, path: str, etag: str | None) -> tuple[int, bytes, str | None]:
        if path.endswith(".tgz"):
            name, _, file = path.partition("/-/")
            version = file[len(name.rsplit("/", 1)[-1]) + 1:-4]
            with self.lock:
                found = self.packages.get(name, {}).get(version)
            return (200, found[0], None) if found else (404, b'{"error":"not found"}', None)
        if path not in self.packages:
            return 404, b'{"error":"not found"}', None
        body = json.dumps(self.packument(path)).encode()
        tag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        return (304, b"", tag) if etag == tag else (200, body, tag)
