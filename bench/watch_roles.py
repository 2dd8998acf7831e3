#!/usr/bin/env python3
"""Several ``chainwatch watch --role`` processes on one database: what the claims cost and what
more scanners buy on this machine.

``queue`` (default): the bare protocol, no scanning: ``--versions`` queued versions are claimed
and finished (``claim_next`` + ``claim`` + ``finish``, three transactions per version, as a
scanner does) by 1 and by 2 processes at once; prints versions a second.

``scanners``: the real thing: a static loopback registry with ``--versions`` fresh releases
(small inert packages), one ``--role poller --once`` to queue them, then 1 and 2 ``--role
scanner`` processes and one ``--role deliverer``; prints releases a minute from the scanners'
start until the queue is empty.

Both on a throwaway PostgreSQL cluster (initdb, loopback only) and on one SQLite file.

    python bench/watch_roles.py queue --versions 2000
    python bench/watch_roles.py scanners --versions 200
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, text  # noqa: E402
from tests.integration.test_postgres import _as_postgres, _bin  # noqa: E402

from chainwatch.db import connect  # noqa: E402
from chainwatch.watch.state import WatchState  # noqa: E402

T0 = 1_800_000_000.0


@contextmanager
def throwaway_postgres() -> Iterator[str]:
    initdb, pg_ctl = _bin("initdb"), _bin("pg_ctl")
    if not initdb or not pg_ctl:
        sys.exit("PostgreSQL's server programs are not installed")
    tmp = Path(tempfile.mkdtemp(prefix="chainwatch-bench-pg-"))
    if os.geteuid() == 0:
        shutil.chown(tmp, "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    subprocess.run(_as_postgres([initdb, "-D", str(tmp / "data"), "-U", "postgres",
                                 "--auth=trust"]), check=True, capture_output=True)
    subprocess.run(_as_postgres([pg_ctl, "-D", str(tmp / "data"), "-l", str(tmp / "log"), "-w",
                                 "-o", f"-c listen_addresses=127.0.0.1 -c port={port} "
                                 f"-c unix_socket_directories={tmp}", "start"]),
                   check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(_as_postgres([pg_ctl, "-D", str(tmp / "data"), "-m", "immediate",
                                     "stop"]), capture_output=True, check=False)
        shutil.rmtree(tmp, ignore_errors=True)


def fresh_database(server: str | None, folder: Path, name: str) -> str:
    if server is None:
        return f"sqlite:///{folder / (name + '.db')}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {name}"))
        conn.execute(text(f"CREATE DATABASE {name}"))
    admin.dispose()
    return server.rsplit("/", 1)[0] + "/" + name


# -- queue ----------------------------------------------------------------------------------
def drain(url: str, who: str) -> None:
    state = WatchState(connect(url))
    n = 0
    while (item := state.claim_next(f"{who}#{n}", T0, 60.0)) is not None:
        item = state.claim(item, T0 + 60)
        state.finish(item, "benign", None, [], T0)
        n += 1


def bench_queue(url: str, versions: int, workers: int) -> float:
    state = WatchState(connect(url))
    state.add_packages(["bench"], set())
    state.record_poll("bench", [{"version": f"1.0.{i}", "published": None, "publisher": None,
                                 "status": "queued"} for i in range(versions)],
                      baseline=False, now=T0, next_due=T0 + 60)
    procs = [multiprocessing.Process(target=drain, args=(url, f"w{i}"))
             for i in range(workers)]
    started = time.perf_counter()
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    elapsed = time.perf_counter() - started
    assert state.status(T0)["queued"] == 0
    return versions / elapsed


# -- scanners -------------------------------------------------------------------------------
def bench_scanners(url: str, versions: int, scanners: int, folder: Path) -> float:
    from tests.helpers import BENIGN_INDEX
    from tests.integration.test_watch_roles import Server

    packages = max(1, versions // 5)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "NO_COLOR": "1"}
    with Server() as server:
        old, fresh = time.time() - 90 * 86400, time.time() - 600
        for i in range(packages):
            server.publish(f"cw-roles-{i}", [("1.0.0", BENIGN_INDEX, old)] + [
                (f"1.0.{n}", BENIGN_INDEX + f"// {n}\n", fresh + n) for n in range(1, 6)])
        watchlist = folder / "watchlist.txt"
        watchlist.write_text("".join(f"cw-roles-{i}\n" for i in range(packages)))

        def start(role: str, *extra: str) -> subprocess.Popen[bytes]:
            return subprocess.Popen(
                [sys.executable, "-m", "chainwatch", "watch", "--role", role, "--db", url,
                 "--registry", server.url, "--cache-dir", str(folder / f"cache-{role}"),
                 "--webhook", server.url + "hook", *extra],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        start("poller", "--once", "--packages", str(watchlist)).wait()
        state = WatchState(connect(url))
        queued = state.status()["queued"]
        started = time.perf_counter()
        procs = [start("scanner") for _ in range(scanners)] + [start("deliverer")]
        while state.status()["queued"]:
            time.sleep(0.2)
        elapsed = time.perf_counter() - started
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait()
    return float(queued) / elapsed * 60


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", nargs="?", choices=("queue", "scanners"), default="queue")
    parser.add_argument("--versions", type=int, default=None)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="chainwatch-bench-roles-"))
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    try:
        with throwaway_postgres() as server:
            for label, base in (("postgresql", server), ("sqlite", None)):
                for n in (1, 2):
                    url = fresh_database(base, folder, f"b_{args.mode}_{n}")
                    if args.mode == "queue":
                        rate = bench_queue(url, args.versions or 2000, n)
                        print(f"{label:10} {n} process(es): {rate:7.0f} versions/s claimed "
                              f"and finished")
                    else:
                        rate = bench_scanners(url, args.versions or 200, n, folder)
                        print(f"{label:10} {n} scanner(s): {rate:7.0f} releases/min")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
