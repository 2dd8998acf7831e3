#!/usr/bin/env python3
"""Scan throughput beside GuardDog on 40 pinned popular releases (issue 14).

Fetches the 40 releases once (cached by integrity, written as local tarballs under
bench/.cache/scan_speed/), then in one run:

* GuardDog 3.2.0, one process per package (``guarddog npm scan FILE --output-format json``);
* chainwatch, one ``scan`` of all 40 local tarballs (``--against none``, ``--jobs`` default);
* chainwatch, one process per package: average, p50, p95;
* next alone in a fresh process: time, MB/s, peak RSS (the process and its workers, summed);
* patch-release diffs (the pinned releases that are patch bumps, against their settled
  baseline) analysed in process: p50 / p95;
* cold start: ``chainwatch --version`` and a whole-process scan of a small package.

Prints the figures with the load average and writes bench/out/scan_speed.json.

    python bench/scan_speed.py                                # the full run, GuardDog beside
    python bench/scan_speed.py --peer-cache bench/out/guarddog_times.json   # reuse its times
    python bench/scan_speed.py --no-peer                      # chainwatch only

GuardDog is found at --peer-path, else $CHAINWATCH_GUARDDOG, else ./.venv-guarddog (install it
with ``python3 -m venv .venv-guarddog && .venv-guarddog/bin/pip install -q guarddog==3.2.0``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "bench" / ".cache" / "scan_speed"
OUT = ROOT / "bench" / "out"

#: The issue's 40 releases, pinned.
PINNED = [
    "chalk@6.0.1", "debug@4.4.3", "lodash@4.18.1", "express@5.3.0", "react@19.3.1",
    "react-dom@19.3.1", "axios@1.21.1", "typescript@7.0.2", "webpack@5.112.2", "esbuild@0.28.2",
    "moment@2.31.0", "commander@15.1.0", "yargs@18.2.0", "uuid@14.0.3", "semver@7.8.6",
    "ws@8.23.0", "node-fetch@3.3.2", "dotenv@18.0.10", "jsonwebtoken@9.0.3", "bcryptjs@3.0.3",
    "core-js@3.51.0", "rxjs@7.8.2", "vue@3.5.45", "@babel/core@8.1.3", "eslint@10.15.0",
    "prettier@3.10.1", "next@16.4.6", "three@0.187.0", "socket.io@4.8.4", "mongoose@9.12.1",
    "pg@8.23.1", "sqlite3@6.0.1", "sharp@0.35.5", "puppeteer-core@25.16.0", "electron@45.5.0",
    "ethers@6.17.0", "web3@4.16.0", "bn.js@5.2.5", "crypto-js@4.2.0", "node-forge@1.4.3",
]
#: Those of the 40 that are patch releases, with the settled baseline chainwatch picks for them.
PATCH_BASELINES = {
    "chalk@6.0.1": "6.0.0", "debug@4.4.3": "4.4.1", "react@19.3.1": "19.3.0",
    "react-dom@19.3.1": "19.3.0", "axios@1.21.1": "1.21.0", "webpack@5.112.2": "5.112.0",
    "esbuild@0.28.2": "0.28.1", "uuid@14.0.3": "14.0.2", "semver@7.8.6": "7.8.5",
    "dotenv@18.0.10": "18.0.9", "jsonwebtoken@9.0.3": "9.0.2", "bcryptjs@3.0.3": "3.0.2",
    "rxjs@7.8.2": "7.8.1", "vue@3.5.45": "3.5.44", "@babel/core@8.1.3": "8.1.2",
    "next@16.4.6": "16.4.5", "socket.io@4.8.4": "4.8.3", "mongoose@9.12.1": "9.12.0",
    "pg@8.23.1": "8.23.0", "sharp@0.35.5": "0.35.4", "bn.js@5.2.5": "5.2.4",
    "node-forge@1.4.3": "1.4.2",
}
SMALL = "chalk@6.0.1"
LARGE = "next@16.4.6"
PEER_VERSION = "3.2.0"


def split(spec: str) -> tuple[str, str]:
    name, _, version = spec.rpartition("@")
    return name, version


def tarball_path(spec: str) -> Path:
    return CACHE / (spec.replace("/", "__").replace("@", "_") + ".tgz")


def fetch(specs: Sequence[str], offline: bool) -> dict[str, Path]:
    """Each release as a local tarball, fetched once (the client caches by integrity)."""
    from chainwatch.packument import release_from_packument
    from chainwatch.registry import RegistryClient

    CACHE.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    with RegistryClient(offline=offline) as client:
        for spec in specs:
            path = tarball_path(spec)
            if not path.exists():
                name, version = split(spec)
                release = release_from_packument(client.packument(name), version)
                assert release.tarball_url, spec
                tarball = client.tarball(release.tarball_url, release.integrity, release.shasum)
                if tarball.integrity_error:
                    raise SystemExit(f"{spec}: {tarball.integrity_error}")
                path.write_bytes(tarball.data)
            paths[spec] = path
    return paths


def unpacked_bytes(path: Path) -> int:
    from chainwatch.archive import read_tarball

    return sum(len(f.data) for f in read_tarball(path.read_bytes(), source=str(path)).files)


def pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def chainwatch_exe() -> list[str]:
    exe = Path(sys.executable).parent / "chainwatch"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "chainwatch"]


def _tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its descendants, from /proc (0 when gone)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    page = os.sysconf("SC_PAGE_SIZE")
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
            statm = Path(entry.path, "statm").read_text().split()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
        rss[int(entry.name)] = int(statm[1]) * page
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += rss.get(p, 0)
        todo.extend(children.get(p, []))
    return total


#: CPU seconds (user + system) of the last command timed, its worker processes included: on a
#: loaded machine wall time depends on the neighbours, CPU time much less
LAST_CPU = [0.0]


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(cmd: list[str], env: dict[str, str], sample_rss: bool = False
          ) -> tuple[float, subprocess.CompletedProcess[str], int]:
    """Wall time of a command, its result, and (when asked) the peak RSS of its process tree,
    sampled every 20 ms. Its CPU seconds are left in LAST_CPU."""
    peak = 0
    cpu = _children_cpu()
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, _tree_rss(proc.pid))
            stop.wait(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    if sample_rss:
        sampler.start()
    out, errs = proc.communicate(timeout=1800)
    seconds = time.perf_counter() - started
    LAST_CPU[0] = _children_cpu() - cpu
    stop.set()
    if sample_rss:
        sampler.join()
    return seconds, subprocess.CompletedProcess(cmd, proc.returncode, out, errs), peak


def guarddog_exe(path: str | None) -> Path:
    for candidate in (path, os.environ.get("CHAINWATCH_GUARDDOG"),
                      str(ROOT / ".venv-guarddog" / "bin" / "guarddog")):
        if candidate:
            exe = Path(candidate)
            if exe.is_dir():
                exe = exe / "bin" / "guarddog"
            if exe.is_file():
                return exe
    raise SystemExit("error: no guarddog: python3 -m venv .venv-guarddog && "
                     f".venv-guarddog/bin/pip install -q guarddog=={PEER_VERSION}")


def run_peer(exe: Path, paths: dict[str, Path]) -> dict[str, Any]:
    times: dict[str, float] = {}
    cpu = 0.0
    failed: list[str] = []
    for spec, path in paths.items():
        seconds, done, _ = timed([str(exe), "npm", "scan", str(path), "--output-format", "json"],
                                 dict(os.environ))
        times[spec] = seconds
        cpu += LAST_CPU[0]
        try:
            json.loads(done.stdout)["risk_score"]["label"]
        except (ValueError, KeyError, TypeError):
            failed.append(spec)
        print(f"  guarddog {spec:26} {seconds:7.2f} s", file=sys.stderr)
    return {"tool": f"guarddog {PEER_VERSION}", "date": datetime.now(UTC).isoformat(
        timespec="seconds"), "host": socket.gethostname(), "cpus": os.cpu_count(),
        "loadavg": os.getloadavg(), "total_s": sum(times.values()), "cpu_s": cpu,
        "per_package_s": times,
        "failed": failed}


def patch_diffs(paths: dict[str, Path]) -> tuple[list[float], list[float]]:
    """In-process analysis time (wall, CPU) of each pinned patch release against its baseline,
    in this process only (no workers): loading first fills the registry client's disk caches
    (packuments, tarballs, attestations), then a fresh scanner (empty result cache) is timed."""
    from chainwatch.registry import RegistryClient
    from chainwatch.scan import Scanner

    with RegistryClient() as client:
        pairs = []
        with Scanner(client, workers=1) as warm:
            for spec, base in PATCH_BASELINES.items():
                name, _ = split(spec)
                target, baseline = warm.load(spec), warm.load(f"{name}@{base}")
                warm._provenance_drift(target)  # attestations into the client's disk cache
                pairs.append((target, baseline))
        times: list[float] = []
        cpu: list[float] = []
        with Scanner(client, workers=1) as scanner:
            scanner.engine.scan_file(pairs[0][0].files.files[0])  # rules compiled before timing
            for target, baseline in pairs:
                started, c0 = time.perf_counter(), time.process_time()
                scanner.analyze(target, baseline)
                times.append(time.perf_counter() - started)
                cpu.append(time.process_time() - c0)
    return times, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-peer", action="store_true", help="do not run GuardDog")
    parser.add_argument("--peer-cache", type=Path, metavar="FILE",
                        help="reuse GuardDog's times from FILE (written there when missing)")
    parser.add_argument("--peer-path", help="the guarddog executable or its venv")
    parser.add_argument("--offline", action="store_true", help="only cached releases")
    parser.add_argument("--out", default="scan_speed",
                        help="bench/out/NAME.json and NAME_results.json (default scan_speed)")
    parser.add_argument("--skip", nargs="*", default=[],
                        choices=["per-process", "large", "cold", "diffs"],
                        help="leave these passes out (a quicker look; not the issue's figure)")
    args = parser.parse_args()

    load_before = os.getloadavg()
    paths = fetch([*PINNED, *(f"{split(s)[0]}@{b}" for s, b in PATCH_BASELINES.items())],
                  args.offline)
    targets = {s: paths[s] for s in PINNED}
    sizes = {s: unpacked_bytes(p) for s, p in targets.items()}
    total_mb = sum(sizes.values()) / 1e6
    data_dir = CACHE / "data"  # a private verdict database: the bench never writes the user's
    env = {**os.environ, "CHAINWATCH_DATA_DIR": str(data_dir)}
    scan = [*chainwatch_exe(), "scan", "--against", "none", "-q", "--fail-on", "never",
            "--no-remember", "--format", "json"]
    rep: dict[str, Any] = {"date": datetime.now(UTC).isoformat(timespec="seconds"),
                           "host": socket.gethostname(), "cpus": os.cpu_count(),
                           "packages": len(targets), "unpacked_mb": total_mb}

    peer: dict[str, Any] | None = None
    if args.peer_cache and args.peer_cache.exists():
        peer = json.loads(args.peer_cache.read_text())
        peer["reused_from"] = str(args.peer_cache)
    elif not args.no_peer:
        exe = guarddog_exe(args.peer_path)
        print(f"guarddog: {exe}, one process per package", file=sys.stderr)
        peer = run_peer(exe, targets)
        if args.peer_cache:
            args.peer_cache.write_text(json.dumps(peer, indent=2))

    # warm: the first run after an install compiles the rules once (their cache is keyed by
    # the rule files' hash), as any user's first scan does; not timed
    subprocess.run([*scan, str(targets[SMALL])], capture_output=True, env=env, check=False)
    cmd = [*scan, *map(str, targets.values())]
    all_s, done, all_rss = timed(cmd, env, sample_rss=True)
    all_cpu = LAST_CPU[0]
    try:
        results = json.loads(done.stdout)["results"]
        errors = [r for r in results if r.get("schema") != "chainwatch.scan/1"]
    except (ValueError, KeyError) as exc:
        raise SystemExit(f"chainwatch scan failed ({exc}): {done.stderr[-2000:]}") from exc
    if errors:
        raise SystemExit(f"chainwatch could not scan: {errors}")
    levels = {f"{r['package']}@{r['version']}": r["verdict"] for r in results}
    in_run = [float(r.get("elapsed_seconds") or 0) for r in results]
    OUT.mkdir(exist_ok=True)
    (OUT / f"{args.out}_results.json").write_text(json.dumps(
        [{k: v for k, v in r.items() if k != "elapsed_seconds"} for r in results], indent=1))
    rep["one_scan"] = {"seconds": all_s, "cpu_s": all_cpu, "mb_per_s": total_mb / all_s,
                       "peak_rss_tree_mb": all_rss / 1e6,
                       "in_run_p50_s": pct(in_run, 0.5), "in_run_p95_s": pct(in_run, 0.95),
                       "flagged": {k: v for k, v in levels.items() if v != "benign"}}

    if "per-process" not in args.skip:
        per: dict[str, float] = {}
        per_cpu = 0.0
        for spec, path in targets.items():
            per[spec] = timed([*scan, str(path)], env)[0]
            per_cpu += LAST_CPU[0]
        rep["per_process"] = {"average_s": statistics.mean(per.values()),
                              "average_cpu_s": per_cpu / len(per),
                              "p50_s": pct(list(per.values()), 0.5),
                              "p95_s": pct(list(per.values()), 0.95), "per_package_s": per}

    if "large" not in args.skip:
        next_s, _, next_rss = timed([*scan, str(targets[LARGE])], env, sample_rss=True)
        rep["large"] = {"package": LARGE, "unpacked_mb": sizes[LARGE] / 1e6, "seconds": next_s,
                        "cpu_s": LAST_CPU[0], "mb_per_s": sizes[LARGE] / 1e6 / next_s,
                        "peak_rss_tree_mb": next_rss / 1e6}
    if "cold" not in args.skip:
        rep["cold_start"] = {
            "version_s": min(timed([*chainwatch_exe(), "--version"], env)[0] for _ in range(3)),
            "small_scan_s": min(timed([*scan, str(targets[SMALL])], env)[0] for _ in range(3)),
            "small": SMALL}
    if "diffs" not in args.skip:
        diffs, diff_cpu = patch_diffs(paths)
        rep["patch_diff"] = {"pairs": len(diffs), "p50_s": pct(diffs, 0.5),
                             "p95_s": pct(diffs, 0.95), "cpu_p50_s": pct(diff_cpu, 0.5),
                             "cpu_p95_s": pct(diff_cpu, 0.95)}
    if peer is not None:
        rep["peer"] = {k: peer[k] for k in ("tool", "date", "host", "loadavg", "total_s", "cpu_s",
                                             "failed") if k in peer}
        rep["peer"]["reused_from"] = peer.get("reused_from")
        rep["ratio"] = peer["total_s"] / all_s
        if peer.get("cpu_s"):
            rep["cpu_ratio"] = peer["cpu_s"] / all_cpu
    rep["loadavg"] = {"before": load_before, "after": os.getloadavg()}

    print(f"{len(targets)} pinned releases, {total_mb:.0f} MB unpacked, {os.cpu_count()} cores, "
          f"load average {load_before[0]:.2f} before / {rep['loadavg']['after'][0]:.2f} after")
    if peer is not None:
        how = (f"reused from {peer['reused_from']} ({peer['date']}, {peer.get('host')})"
               if peer.get("reused_from") else f"this run, load {peer['loadavg'][0]:.2f}")
        print(f"GuardDog {PEER_VERSION}, one process per package: {peer['total_s']:7.1f} s, "
              f"{peer.get('cpu_s', 0):.1f} CPU s ({total_mb / peer['total_s']:.1f} MB/s; {how}; "
              f"failed: {len(peer['failed'])})")
    one = rep["one_scan"]
    print(f"chainwatch, one scan of all {len(targets)}: {all_s:7.1f} s, {all_cpu:.1f} CPU s "
          f"({one['mb_per_s']:.1f} MB/s, peak RSS {one['peak_rss_tree_mb']:.0f} MB with workers; "
          f"per package in the run p50 {one['in_run_p50_s']:.2f} s, p95 {one['in_run_p95_s']:.2f} s)")
    if "ratio" in rep:
        print(f"ratio: {rep['ratio']:.1f}x GuardDog's wall time"
              + (f", {rep['cpu_ratio']:.1f}x its CPU time" if "cpu_ratio" in rep else ""))
    if "per_process" in rep:
        pp = rep["per_process"]
        print(f"chainwatch, one process per package: average {pp['average_s']:.2f} s "
              f"({pp['average_cpu_s']:.2f} CPU s), p50 {pp['p50_s']:.2f} s, p95 {pp['p95_s']:.2f} s")
    if "large" in rep:
        lg = rep["large"]
        print(f"{LARGE} alone ({lg['unpacked_mb']:.0f} MB): {lg['seconds']:.1f} s, "
              f"{lg['cpu_s']:.1f} CPU s ({lg['mb_per_s']:.1f} MB/s), peak RSS "
              f"{lg['peak_rss_tree_mb']:.0f} MB (process and workers)")
    if "cold_start" in rep:
        cs = rep["cold_start"]
        print(f"cold start: --version {cs['version_s']:.2f} s; scan of {SMALL} "
              f"{cs['small_scan_s']:.2f} s (best of 3)")
    if "patch_diff" in rep:
        pd = rep["patch_diff"]
        print(f"patch-release diff in process ({pd['pairs']} pairs): p50 "
              f"{1000 * pd['p50_s']:.0f} ms ({1000 * pd['cpu_p50_s']:.0f} ms CPU), p95 "
              f"{1000 * pd['p95_s']:.0f} ms ({1000 * pd['cpu_p95_s']:.0f} ms CPU)")
    if one["flagged"]:
        print("flagged (standalone):", ", ".join(f"{k} {v}" for k, v in one["flagged"].items()))
    (OUT / f"{args.out}.json").write_text(json.dumps(rep, indent=2))


if __name__ == "__main__":
    main()
