#!/usr/bin/env python3
"""The watcher's figures: publish→alert latency, and the cost of watching many packages.

``latency`` (default): a real Verdaccio on loopback (installed once into the test cache), the
watcher started as a user would (``chainwatch watch`` with its default intervals), and a webhook
receiver. ``--publishes`` times (default 20) an inert compromised release is published with the
real npm client; the time from ``npm publish`` returning to the webhook receiving the alert is
recorded. Prints p50/p95/max.

``scale``: a static local registry serving ``--packages`` (default 10,000) small packuments with
ETags; the watcher polls them all under ``--budget`` requests per minute for ``--seconds``;
prints polls done, the watcher's CPU time and its peak resident memory.

    python bench/watch.py latency --publishes 20
    python bench/watch.py latency --feed          # with a change feed as well as polling
    python bench/watch.py scale --packages 10000 --budget 12000 --seconds 120
    python bench/watch.py restarts --publishes 20 --kill-every 3   # kill -9 while publishing
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.helpers import BENIGN_INDEX, clipper_source  # noqa: E402
from tests.integration.test_watch_verdaccio import Receiver  # noqa: E402
from tests.integration.verdaccio import free_port, start_verdaccio, wait_up  # noqa: E402


def proc_stats(pid: int) -> tuple[float, float]:
    """CPU seconds (user+system) and peak RSS in MB of a running process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    peak = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            peak = int(line.split()[1]) / 1024
    return cpu, peak


def watcher(args: list[str], root: Path, env_extra: dict[str, str]) -> subprocess.Popen[bytes]:
    env = {**os.environ, "CHAINWATCH_DATA_DIR": str(root), "CHAINWATCH_CACHE_DIR": str(root),
           **env_extra}
    return subprocess.Popen([sys.executable, "-m", "chainwatch", "watch", *args,
                             "--db", f"sqlite:///{root / 'watch.db'}"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


class ChangeFeed:
    """A CouchDB-style ``_changes`` endpoint the benchmark appends to after each publish, as a
    registry's replication feed would (Verdaccio has none)."""

    def __init__(self) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import parse_qs, urlparse

        self.rows: list[dict[str, object]] = []
        rows = self.rows

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                since = parse_qs(urlparse(self.path).query).get("since", ["0"])[0]
                start = len(rows) if since == "now" else int(since)
                body = json.dumps({"results": rows[start:], "last_seq": len(rows)}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/_changes"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def changed(self, name: str) -> None:
        self.rows.append({"seq": len(self.rows) + 1, "id": name, "changes": []})


def latency(publishes: int, feed: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        server = start_verdaccio(root)
        receiver = Receiver()
        changes = ChangeFeed() if feed else None
        names = [f"bench-tint-{i}" for i in range(publishes)]
        for name in names:
            server.publish(name, "1.0.0", {"index.js": BENIGN_INDEX})
        (root / "watch.txt").write_text("\n".join(names) + "\n")
        proc = watcher(["--packages", str(root / "watch.txt"), "--registry", server.registry,
                        "--webhook", receiver.url,
                        *(["--changes", changes.url] if changes else [])], root,
                       {"NPM_CONFIG_USERCONFIG": str(server.home / ".npmrc")})
        try:
            time.sleep(5)  # first poll: the baseline
            waits = []
            for name in names:
                published = time.time()
                server.publish(name, "1.0.1", {"index.js": BENIGN_INDEX + clipper_source()})
                if changes is not None:
                    changes.changed(name)
                alert = receiver.wait_for(f"release:{name}@1.0.1", timeout=300)
                waits.append(alert["_at"] - published)
                print(f"  {name}: alert after {waits[-1]:.1f} s", flush=True)
            waits.sort()
            p95 = waits[min(len(waits) - 1, round(0.95 * (len(waits) - 1)))]
            how = ("with a change feed" if feed else
                   "polling at the default intervals (60 s, 15 s for recently active packages)")
            print(f"\npublish→alert over {len(waits)} publishes, {how}: "
                  f"p50 {statistics.median(waits):.1f} s, p95 {p95:.1f} s, max {waits[-1]:.1f} s")
        finally:
            proc.terminate()
            proc.wait(timeout=15)
            receiver.server.shutdown()
            server.stop()


def restarts(publishes: int, kill_every: float) -> None:
    """Publish compromised releases while the watcher is killed with SIGKILL every few seconds
    and restarted; count missed and duplicate alerts at the receiver."""
    import signal

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        server = start_verdaccio(root)
        receiver = Receiver()
        names = [f"bench-kill-{i}" for i in range(publishes)]
        for name in names:
            server.publish(name, "1.0.0", {"index.js": BENIGN_INDEX})
        (root / "watch.txt").write_text("\n".join(names) + "\n")
        args = ["--packages", str(root / "watch.txt"), "--registry", server.registry,
                "--webhook", receiver.url, "--interval", "2s", "--hot-interval", "2s"]
        env = {"NPM_CONFIG_USERCONFIG": str(server.home / ".npmrc")}
        proc = watcher(args, root, env)
        kills = 0
        last_kill = time.time()
        try:
            time.sleep(5)
            for name in names:
                server.publish(name, "1.0.1", {"index.js": BENIGN_INDEX + clipper_source()})
                if time.time() - last_kill >= kill_every:
                    proc.send_signal(signal.SIGKILL)
                    proc.wait()
                    kills += 1
                    proc = watcher(args, root, env)
                    last_kill = time.time()
            deadline = time.time() + 120
            while len({a["id"] for a in receiver.alerts}) < publishes and time.time() < deadline:
                time.sleep(0.5)
            time.sleep(5)  # anything re-sent after the last alert shows up now
        finally:
            proc.terminate()
            proc.wait(timeout=15)
            receiver.server.shutdown()
            server.stop()
        ids = [a["id"] for a in receiver.alerts]
        missed = publishes - len(set(ids))
        print(f"{publishes} compromised publishes, watcher killed with SIGKILL {kills} times: "
              f"{len(set(ids))} alerted, {missed} missed, {len(ids) - len(set(ids))} duplicates")


def scale(packages: int, budget: int, seconds: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        docs = root / "packuments"
        docs.mkdir()
        names = [f"bench-watch-{i}" for i in range(packages)]
        for name in names:
            versions = {f"1.0.{k}": {"name": name, "version": f"1.0.{k}",
                                     "dist": {"tarball": f"http://127.0.0.1/{name}/-/x.tgz"}}
                        for k in range(5)}
            (docs / f"{name}.json").write_text(json.dumps({
                "name": name, "dist-tags": {"latest": "1.0.4"}, "versions": versions,
                "time": {v: "2024-01-01T00:00:00.000Z" for v in versions}}))
        port = free_port()
        upstream = subprocess.Popen([sys.executable, str(ROOT / "bench" / "proxy.py"),
                                     "--serve-upstream", str(docs), "--port", str(port)])
        (root / "watch.txt").write_text("\n".join(names) + "\n")
        try:
            wait_up(f"http://127.0.0.1:{port}/{names[0]}")
            proc = watcher(["--packages", str(root / "watch.txt"), "--registry",
                            f"http://127.0.0.1:{port}/", "--budget", str(budget),
                            "--interval", "60s"], root, {})
            started = time.time()
            samples = []
            while time.time() - started < seconds:
                time.sleep(5)
                samples.append(proc_stats(proc.pid))
            cpu, peak = proc_stats(proc.pid)
            status = json.loads(subprocess.run(
                [sys.executable, "-m", "chainwatch", "watch", "--status", "--db",
                 f"sqlite:///{root / 'watch.db'}"], capture_output=True, text=True,
                env={**os.environ, "CHAINWATCH_DATA_DIR": str(root)}).stdout)
            proc.terminate()
            proc.wait(timeout=15)
            polled = packages - status["due_now"]
            print(f"{packages} packages, budget {budget}/min, {seconds:.0f} s: "
                  f"{polled} polled at least once, {status['failing_packages']} failing; "
                  f"CPU {cpu:.1f} s ({100 * cpu / seconds:.0f}% of one core), peak RSS "
                  f"{peak:.0f} MB")
        finally:
            upstream.terminate()
            upstream.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", nargs="?", choices=("latency", "scale", "restarts"),
                        default="latency")
    parser.add_argument("--kill-every", type=float, default=3.0,
                        help="restarts: seconds between SIGKILLs")
    parser.add_argument("--publishes", type=int, default=20)
    parser.add_argument("--feed", action="store_true",
                        help="latency: also follow a change feed the benchmark writes to")
    parser.add_argument("--packages", type=int, default=10_000)
    parser.add_argument("--budget", type=int, default=12_000)
    parser.add_argument("--seconds", type=float, default=120.0)
    args = parser.parse_args()
    if args.mode == "latency":
        latency(args.publishes, args.feed)
    elif args.mode == "restarts":
        restarts(args.publishes, args.kill_every)
    else:
        scale(args.packages, args.budget, args.seconds)


if __name__ == "__main__":
    main()
