"""Peak memory of a real `chainwatch proxy` process under concurrent large packuments.

A loopback upstream serves N generated packuments of about S MB each; the proxy (a fresh
process, --no-scan) gets all N requests at once; the proxy's peak RSS (VmHWM) is read from
/proc. Usage:

    .venv/bin/python bench/proxy_memory.py [--packages 32] [--mb 8] [--memory MB]

Without --memory the proxy runs with its default budget (or, for an older chainwatch on
PYTHONPATH, none).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx


def packument(name: str, size_mb: float, upstream: str) -> bytes:
    versions = max(1, int(size_mb * 1024 * 1024 / 2600))
    return json.dumps({"name": name, "dist-tags": {"latest": f"1.{versions - 1}.0"},
                       "time": {f"1.{i}.0": "2020-01-01T00:00:00.000Z" for i in range(versions)},
                       "versions": {f"1.{i}.0": {
                           "name": name, "version": f"1.{i}.0", "readme": f"{i} " * 600,
                           "dependencies": {f"dep-{j}": "^1.0.0" for j in range(20)},
                           "dist": {"tarball": f"{upstream}{name}/-/{name}-1.{i}.0.tgz",
                                    "shasum": "0" * 40}} for i in range(versions)}}).encode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--packages", type=int, default=32)
    ap.add_argument("--mb", type=float, default=8.0)
    ap.add_argument("--memory", type=int, default=None)
    args = ap.parse_args()
    up_port = free_port()
    upstream = f"http://127.0.0.1:{up_port}/"
    bodies = {f"pkg-{i}": packument(f"pkg-{i}", args.mb, upstream) for i in range(args.packages)}

    class Serve(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = bodies.get(self.path.lstrip("/"))
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            # the proxy may give up reading (503 when its memory budget has no room)
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(body or b"")

        def log_message(self, *_a: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", up_port), Serve)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = free_port()
    cmd = [sys.executable, "-m", "chainwatch", "proxy", "--upstream", upstream, "--listen",
           f"127.0.0.1:{port}", "--no-scan", "--min-age", "0s"]
    if args.memory is not None:
        cmd += ["--memory", str(args.memory)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "CHAINWATCH_DATA_DIR": "/tmp/cw-bench-mem"})
    try:
        for _ in range(100):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/-/chainwatch/health").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        idle = peak_rss_mb(proc.pid)

        async def burst() -> list[int]:
            async with httpx.AsyncClient(timeout=300) as client:
                async def one(name: str) -> int:
                    return (await client.get(f"http://127.0.0.1:{port}/{name}")).status_code
                return list(await asyncio.gather(*(one(n) for n in bodies)))

        started = time.perf_counter()
        statuses = asyncio.run(burst())
        took = time.perf_counter() - started
        raw = sum(len(b) for b in bodies.values()) / 1024 / 1024
        print(f"{args.packages} packuments, {raw:.0f} MB of JSON, all at once; budget "
              f"{args.memory if args.memory is not None else 'default'}: statuses "
              f"{sorted(set(statuses))}, {took:.1f} s, proxy peak RSS {peak_rss_mb(proc.pid):.0f} MB"
              f" (idle {idle:.0f} MB)")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        server.shutdown()


if __name__ == "__main__":
    main()
