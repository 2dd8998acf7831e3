"""Peak memory of a real `chainwatch proxy` process under concurrent large packuments.

A loopback upstream serves N generated packuments of about S MB each; the proxy (a fresh
process, --no-scan) gets all N requests at once; the proxy's peak RSS (VmHWM) is read from
/proc. Usage:

    .venv/bin/python bench/proxy_memory.py [--packages 32] [--mb 8] [--memory MB]

Without --memory the proxy runs with its default budget (or, for an older chainwatch on
PYTHONPATH, none).

With ``--scans N`` it measures on-demand scans instead: N packages, each a release four days old
(so within the scan window) whose tarball and baseline's unpack to ``--scan-mb`` MB of
JavaScript, with honest ``dist.unpackedSize``; the proxy (scanning, a fresh database) gets the N
tarball requests at once, and its peak RSS is compared with its budget.

    .venv/bin/python bench/proxy_memory.py --scans 4 --scan-mb 60 --memory 512
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


def scan_set(name: str, mb: float, upstream: str) -> dict[str, bytes]:
    """path -> body: the packument of ``name`` and the tarballs of its two versions."""
    import base64
    import gzip
    import hashlib
    import io
    import tarfile
    from datetime import UTC, datetime, timedelta

    line_count = int(mb * 1024 * 1024 / 24)
    js = "".join(f"var v{i} = {i} * 2;  //\n" for i in range(line_count)).encode()
    now = datetime.now(UTC)
    times = {"1.0.0": (now - timedelta(days=20)).isoformat(),
             "1.1.0": (now - timedelta(days=4)).isoformat()}
    out: dict[str, bytes] = {}
    versions = {}
    for version in times:
        meta = json.dumps({"name": name, "version": version, "main": "index.js"}).encode()
        raw = io.BytesIO()
        with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1, mtime=0) as gz, \
                tarfile.open(fileobj=gz, mode="w") as tar:
            for path, data in (("package/package.json", meta), ("package/index.js", js)):
                info = tarfile.TarInfo(path)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        tgz = raw.getvalue()
        out[f"{name}/-/{name}-{version}.tgz"] = tgz
        versions[version] = {"name": name, "version": version, "main": "index.js", "dist": {
            "tarball": f"{upstream}{name}/-/{name}-{version}.tgz",
            "integrity": "sha512-" + base64.b64encode(hashlib.sha512(tgz).digest()).decode(),
            "unpackedSize": len(js) + len(meta)}}
    out[name] = json.dumps({"name": name, "dist-tags": {"latest": "1.1.0"}, "time": times,
                            "versions": versions}).encode()
    return out


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
    ap.add_argument("--scans", type=int, default=0, help="measure N concurrent scans instead")
    ap.add_argument("--scan-mb", type=float, default=60.0)
    args = ap.parse_args()
    up_port = free_port()
    upstream = f"http://127.0.0.1:{up_port}/"
    if args.scans:
        bodies: dict[str, bytes] = {}
        for i in range(args.scans):
            bodies.update(scan_set(f"scan-{i}", args.scan_mb, upstream))
        wanted = [f"scan-{i}/-/scan-{i}-1.1.0.tgz" for i in range(args.scans)]
    else:
        bodies = {f"pkg-{i}": packument(f"pkg-{i}", args.mb, upstream)
                  for i in range(args.packages)}
        wanted = list(bodies)

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
    import tempfile

    data_dir = tempfile.mkdtemp(prefix="cw-bench-mem-")  # a fresh verdict memory: scans run
    cmd = [sys.executable, "-m", "chainwatch", "proxy", "--upstream", upstream, "--listen",
           f"127.0.0.1:{port}", "--min-age", "0s", "--db", f"sqlite:///{data_dir}/cw.db"]
    if not args.scans:
        cmd.append("--no-scan")
    if args.memory is not None:
        cmd += ["--memory", str(args.memory)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "CHAINWATCH_DATA_DIR": data_dir,
                                 "CHAINWATCH_CACHE_DIR": data_dir})
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
                return list(await asyncio.gather(*(one(n) for n in wanted)))

        started = time.perf_counter()
        statuses = asyncio.run(burst())
        took = time.perf_counter() - started
        raw = sum(len(b) for b in bodies.values()) / 1024 / 1024
        if args.scans:
            print(f"{args.scans} scans at once, each of a release and its baseline unpacking to "
                  f"{args.scan_mb:.0f} MB; budget "
                  f"{args.memory if args.memory is not None else 'default'}: statuses "
                  f"{sorted(statuses)}, {took:.1f} s, proxy peak RSS "
                  f"{peak_rss_mb(proc.pid):.0f} MB (idle {idle:.0f} MB)")
            return
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
