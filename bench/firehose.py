#!/usr/bin/env python3
"""A publish stream like the registry's, replayed into ``chainwatch watch --dask``.

``derive``: the rate and size mix of real releases, from the full packuments of the top N
packages of ``src/chainwatch/data/top-npm.txt`` (fetched once and cached as slim JSON under
``~/.cache/chainwatch-bench/packuments``): releases per hour over the last 30 days and in the
busiest hour of the last year, and the quantiles of ``dist.unpackedSize`` and file counts of
the releases of the last year.

``replay`` (default; runs ``derive`` first): for each worker count (``--workers 1 2 4``) a real
``dask scheduler`` and that many single-threaded ``dask worker`` processes on loopback, a static
loopback registry (packuments with ETags, tarballs) with a CouchDB-style change feed, and
``chainwatch watch --dask`` following it. Inert releases whose sizes are drawn from the real
mix (capped by ``--max-size``; one in 20 carries the inert clipper replica) are published as a
Poisson stream at ``--rate`` releases a minute for ``--seconds``, each against a baseline
published 30 days earlier; then up to ``--drain`` seconds for the queue to empty. Prints,
per worker count: releases scanned a minute, p50/p95 publish→verdict, the backlog during the
stream (does the queue grow?), and the machine's load average.

    python bench/firehose.py derive --top 100
    python bench/firehose.py replay --workers 1 2 4 --rate 60 --seconds 90
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.helpers import BENIGN_INDEX, clipper_source  # noqa: E402
from tests.integration.static_registry import StaticRegistry  # noqa: E402

from bench.watch import ChangeFeed  # noqa: E402

CACHE = Path(os.environ.get("CHAINWATCH_BENCH_CACHE",
                            Path.home() / ".cache" / "chainwatch-bench")) / "packuments"
DASK = Path(sys.executable).parent / "dask"
DAY = 86400.0


# -- the real mix -----------------------------------------------------------------------------
def _slim(name: str, registry: str) -> dict[str, Any] | None:
    """Publish times, unpacked sizes and file counts of one package (cached)."""
    import httpx

    path = CACHE / (name.replace("/", "%2f") + ".json")
    slim: dict[str, Any] | None = json.loads(path.read_text()) if path.exists() else None
    if slim is not None and "latest" in slim:
        return slim
    url = registry.rstrip("/") + "/" + name.replace("/", "%2f")
    try:
        doc = httpx.get(url, timeout=60, follow_redirects=True).json()
        times = doc.get("time") or {}
        slim = {"name": name, "fetched": time.time(), "versions": {
            v: {"time": times.get(v), "size": (m.get("dist") or {}).get("unpackedSize"),
                "files": (m.get("dist") or {}).get("fileCount")}
            for v, m in (doc.get("versions") or {}).items() if isinstance(m, dict)}}
        # this registry leaves dist.unpackedSize out: the latest release's tarball is read (in
        # memory, as chainwatch reads any package) for its packed and unpacked size
        latest = doc["versions"][doc["dist-tags"]["latest"]]
        data = httpx.get(latest["dist"]["tarball"], timeout=120, follow_redirects=True).content
        from chainwatch.archive.tarball import read_tarball

        files = read_tarball(data, source=name)
        slim["latest"] = {"packed": len(data), "unpacked": sum(len(f.data) for f in files.files),
                          "files": len(files.files)}
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
        print(f"  {name}: {exc}", file=sys.stderr)
        return None
    CACHE.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(slim))
    return slim


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def derive(top: int, registry: str) -> dict[str, Any]:
    names = (ROOT / "src/chainwatch/data/top-npm.txt").read_text().split()[:top]
    with ThreadPoolExecutor(8) as pool:
        slims = [s for s in pool.map(lambda n: _slim(n, registry), names) if s]
    stamps = [(slim["name"], datetime.fromisoformat(meta["time"].replace("Z", "+00:00"))
                .timestamp(), meta) for slim in slims for meta in slim["versions"].values()
              if isinstance(meta.get("time"), str)]
    now = max(when for _, when, _ in stamps)  # the snapshot's newest release, not our clock
    month, sizes, files = 0, [], []
    hours: dict[int, int] = {}
    one: dict[tuple[int, str], int] = {}
    for name, when, meta in stamps:
        if now - when <= 30 * DAY:
            month += 1
        if now - when <= 365 * DAY:
            hours[int(when // 3600)] = hours.get(int(when // 3600), 0) + 1
            key = (int(when // 3600), name)
            one[key] = one.get(key, 0) + 1
            latest = next(x["latest"] for x in slims if x["name"] == name)
            sizes.append(meta["size"] if isinstance(meta.get("size"), int)
                         else latest["unpacked"])
            files.append(meta["files"] if isinstance(meta.get("files"), int)
                         else latest["files"])
    # an hour where one package "published" hundreds of versions is a registry rewrite of its
    # time field (typescript, 2026-08-09 02:00 UTC: 1,482), not a burst: reported apart
    rewrites = {h for (h, _), n in one.items() if n > 200}
    real_hours = [n for h, n in hours.items() if h not in rewrites]
    mix: dict[str, Any] = {
           "packages": len(slims), "per_hour_30d": month / (30 * 24),
           "peak_hour_365d": max(real_hours, default=0),
           "p99_hour_365d": _quantile([float(n) for n in real_hours], 0.99) if real_hours else 0,
           "rewrite_hours": len(rewrites),
           "releases_365d": sum(hours.values()), "sizes": sizes,
           "package_sizes": [x["latest"]["unpacked"] for x in slims],
           "size_q": {q: _quantile(sizes, q) for q in (0.1, 0.5, 0.9, 0.99)} if sizes else {},
           "files_q": {q: _quantile(files, q) for q in (0.5, 0.9, 0.99)} if files else {}}
    print(f"top {mix['packages']} packages (snapshot up to "
          f"{datetime.fromtimestamp(now).date()}): {mix['per_hour_30d']:.2f} releases/hour over "
          f"the last 30 days, {mix['releases_365d']} in the last year "
          f"({mix['releases_365d'] / (365 * 24):.2f}/hour); of the hours with a release, p99 "
          f"{mix['p99_hour_365d']:.0f}, busiest {mix['peak_hour_365d']} "
          f"({mix['rewrite_hours']} hour(s) of one package's time-field rewrite left out)")
    per_package = sorted(mix["package_sizes"])
    print("unpacked size of each package's latest release: " + ", ".join(
        f"p{round(q * 100)} {_quantile(per_package, q) / 1024:.0f} kB" for q in (0.1, 0.5, 0.9, 0.99)))
    if sizes:
        print("unpacked size of a release, weighted by releases (last year): " + ", ".join(
            f"p{round(q * 100)} {v / 1024:.0f} kB" for q, v in mix["size_q"].items())
              + f"; files p50/p90/p99 {'/'.join(str(v) for v in mix['files_q'].values())}")
    return mix


# -- the replay ------------------------------------------------------------------------------
def _files(name: str, size: int, version: str, evil: bool) -> dict[str, str | bytes]:
    """Inert JavaScript of about ``size`` bytes in files of at most 64 kB; the baseline and
    the release share every file but index.js (as a patch release does)."""
    files: dict[str, str | bytes] = {}
    line = "export function f_{n}_{i}(a, b) {{ return a * {i} + b - {j}; }}\n"
    per_file, written, k = 64 * 1024, 0, 0
    while written < size - len(BENIGN_INDEX):
        body = "".join(line.format(n=name.replace("-", "_"), i=i, j=k)
                       for i in range(min(per_file, size - written) // 60 + 1))
        files[f"lib/part{k}.js"] = body
        written += len(body)
        k += 1
    index = BENIGN_INDEX + f"\n// {name} {version}\n"
    files["index.js"] = index + clipper_source() if evil else index
    return files


def _start_cluster(workers: int, root: Path, env: dict[str, str]) -> tuple[str, list[Any]]:
    file = root / "scheduler.json"
    procs = [subprocess.Popen([str(DASK), "scheduler", "--host", "127.0.0.1", "--port", "0",
                               "--no-dashboard", "--scheduler-file", str(file)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    while not file.exists():
        time.sleep(0.2)
    for n in range(workers):
        (root / f"w{n}").mkdir()
        procs.append(subprocess.Popen(
            [str(DASK), "worker", "--scheduler-file", str(file), "--nworkers", "1",
             "--nthreads", "1", "--host", "127.0.0.1", "--no-dashboard",
             "--local-directory", str(root / f"w{n}")], env=env, cwd=root / f"w{n}",
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    address = str(json.loads(file.read_text())["address"])
    import distributed

    with distributed.Client(address, timeout=30) as client:  # type: ignore[no-untyped-call]
        client.wait_for_workers(workers, timeout=120)
    return address, procs


def _rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as conn:
        return list(conn.execute(sql))


def _baselined(db: Path) -> int:
    """Packages the watcher has baselined (0 while it is still creating its database)."""
    try:
        return int(_rows(db, "select count(*) from watch_packages where baselined")[0][0]) \
            if db.exists() else 0
    except sqlite3.OperationalError:
        return 0


def replay(workers: int, rate: float, seconds: float, drain: float, max_size: int,
           sizes: list[int], seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    count = max(1, round(rate * seconds / 60))
    names = [f"firehose-{i}" for i in range(count)]
    drawn = [min(rng.choice(sizes) if sizes else 50_000, max_size) for _ in names]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        env = {**os.environ, "CHAINWATCH_DATA_DIR": str(root), "CHAINWATCH_CACHE_DIR":
               str(root / "cache"), "NO_COLOR": "1"}
        registry, feed = StaticRegistry(), ChangeFeed()
        old = time.time() - 30 * DAY
        for name, size in zip(names, drawn, strict=True):
            registry.publish(name, "1.0.0", _files(name, size, "1.0.0", False), old)
        address, procs = _start_cluster(workers, root, env)
        (root / "watch.txt").write_text("\n".join(names) + "\n")
        db = root / "watch.db"
        watcher = subprocess.Popen(
            [sys.executable, "-m", "chainwatch", "watch", "--packages", str(root / "watch.txt"),
             "--registry", registry.url, "--changes", feed.url, "--dask", address,
             "--budget", "100000", "--interval", "1h", "--hot-interval", "1h",
             "--db", f"sqlite:///{db}"], env=env, stdout=subprocess.DEVNULL,
            stderr=open(root / "watch.log", "w"))  # noqa: SIM115 - closed with the folder
        try:
            while _baselined(db) < count:
                time.sleep(0.5)
            load_before = os.getloadavg()
            published: dict[str, float] = {}
            backlog: list[tuple[float, int]] = []
            start = time.time()
            due = start
            for i, (name, size) in enumerate(zip(names, drawn, strict=True)):
                due += rng.expovariate(rate / 60)
                while (now := time.time()) < due:
                    done = _rows(db, "select count(*) from watch_versions where version = "
                                     "'1.0.1' and status != 'queued'")[0][0]
                    backlog.append((now - start, len(published) - done))
                    time.sleep(min(1.0, max(0.0, due - now)))
                registry.publish(name, "1.0.1", _files(name, size, "1.0.1", i % 20 == 7),
                                 time.time())
                published[name] = time.time()
                feed.changed(name)
                if i % 10 == 9:  # also when publishing falls behind the schedule
                    done = _rows(db, "select count(*) from watch_versions where version = "
                                     "'1.0.1' and status != 'queued'")[0][0]
                    backlog.append((time.time() - start, len(published) - done))
            stream_end = time.time()
            while time.time() - stream_end < drain:
                done = _rows(db, "select count(*) from watch_versions where version = '1.0.1' "
                                 "and status != 'queued'")[0][0]
                backlog.append((time.time() - start, len(published) - done))
                if done >= count:
                    break
                time.sleep(1.0)
            load_after = os.getloadavg()
            scanned = {n: at for n, at in _rows(
                db, "select name, scanned_at from watch_versions where version = '1.0.1' and "
                    "scanned_at is not null")}
        finally:
            watcher.terminate()
            watcher.wait(timeout=30)
            for proc in reversed(procs):
                proc.terminate()
            for proc in procs:
                proc.wait(timeout=30)
            registry.close()
    waits = sorted(at - published[n] for n, at in scanned.items() if n in published)
    last = max(scanned.values(), default=start)
    during = [b for t, b in backlog if t <= stream_end - start]
    third = during[len(during) // 3] if during else 0
    result: dict[str, Any] = {"workers": workers, "published": count,
              "offered_per_minute": 60 * count / max(stream_end - start, 1e-9), "scanned": len(scanned),
              "per_minute": 60 * len(scanned) / max(last - start, 1e-9),
              "p50": statistics.median(waits) if waits else math.nan,
              "p95": _quantile(waits, 0.95) if waits else math.nan,
              "backlog_third": third, "backlog_end": during[-1] if during else 0,
              "backlog_max": max((b for _, b in backlog), default=0),
              "load": (load_before[0], load_after[0]),
              "size_p50_kB": statistics.median(drawn) / 1024}
    # the backlog's trend over the stream (least squares, releases a minute): a queue that
    # keeps up hovers near zero; one that does not grows at offered minus served
    points = [(t, b) for t, b in backlog if t <= stream_end - start]
    slope = 0.0
    if len(points) > 2:
        mt = statistics.fmean(t for t, _ in points)
        mb = statistics.fmean(b for _, b in points)
        spread = sum((t - mt) ** 2 for t, _ in points)
        slope = 60 * sum((t - mt) * (b - mb) for t, b in points) / spread if spread else 0.0
    result["growth_per_min"] = slope
    result["grows"] = slope > max(5.0, 0.05 * rate)
    print(f"workers {workers}: {count} published at {result['offered_per_minute']:.0f}/min, "
          f"{result['scanned']} scanned, "
          f"{result['per_minute']:.1f} releases/min, publish→verdict p50 {result['p50']:.1f} s "
          f"p95 {result['p95']:.1f} s, backlog at 1/3 {third}, at end of stream "
          f"{result['backlog_end']}, max {result['backlog_max']} (queue "
          f"{'grows' if result['grows'] else 'steady'}: {slope:+.0f}/min), load average "
          f"{result['load'][0]:.1f} → {result['load'][1]:.1f}", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", nargs="?", choices=("replay", "derive"), default="replay")
    parser.add_argument("--top", type=int, default=100, help="packages the mix is derived from")
    parser.add_argument("--registry", default="https://registry.npmjs.org/")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--rate", type=float, default=60.0, help="releases a minute offered")
    parser.add_argument("--seconds", type=float, default=90.0, help="length of the stream")
    parser.add_argument("--drain", type=float, default=120.0)
    parser.add_argument("--max-size", type=int, default=2 * 1024 * 1024,
                        help="cap on a release's unpacked size (bytes)")
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--peak-per-second", type=float, default=5.0,
                        help="the registry-wide peak publish rate the machine count is for "
                             "(see docs/scale.md for where the default comes from)")
    parser.add_argument("--mix", choices=("package", "release"), default="package",
                        help="draw sizes per package (the registry's spread) or per release "
                             "of the top N (dominated by the packages that release most)")
    args = parser.parse_args()
    mix = derive(args.top, args.registry)
    if args.mode == "derive":
        return
    print(f"offered: {args.rate:.0f} releases/min for {args.seconds:.0f} s, sizes from the mix "
          f"capped at {args.max_size / 1024:.0f} kB; {os.cpu_count()} cores", flush=True)
    results = [replay(n, args.rate, args.seconds, args.drain, args.max_size,
                      mix["package_sizes" if args.mix == "package" else "sizes"], args.seed)
               for n in args.workers]
    best = max(results, key=lambda r: r["per_minute"])
    need = math.ceil(args.peak_per_second * 60 / best["per_minute"])
    how = "saturated: its capacity" if best["grows"] else "it kept up: capacity is at least this"
    print(f"best: {best['per_minute']:.0f} releases/min with {best['workers']} workers on this "
          f"{os.cpu_count()}-core machine ({how}); "
          f"a registry-wide peak of {args.peak_per_second:g}/s needs {need} such machines")


if __name__ == "__main__":
    main()
