#!/usr/bin/env python3
"""Analysis speed of standalone scans on the top N cached latest releases (no download timed).

Loads each package once (offline by default: only what the cache holds), then times
``Scanner.analyze(target, None)`` per package, ``--repeat`` times (the best of the repeats
counts, so a busy neighbour on the machine weighs less). Prints throughput (MB of unpacked JS
per second), median and p95 seconds per package, and a digest of the findings so two source
trees can be compared on the same packages in one run::

    PYTHONPATH=/path/to/other/src python bench/analysis_speed.py --top 100 --json a.json
    python bench/analysis_speed.py --top 100 --json b.json --compare a.json
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import json
import pstats
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from chainwatch.analysis.engine import CODE_EXT
from chainwatch.errors import ChainwatchError
from chainwatch.registry import RegistryClient
from chainwatch.scan import Scanner

SHARED = Path(__file__).resolve().parents[2] / "shared" / "corpus"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--top", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--online", action="store_true", help="download what is not cached")
    parser.add_argument("--json", help="write per-package figures and findings here")
    parser.add_argument("--compare", help="a --json file of another run: list differing findings")
    parser.add_argument("--profile", help="write cProfile stats of one pass here")
    args = parser.parse_args()
    names = [line.split("\t")[0] for line in
             (SHARED / "top-npm.tsv").read_text().splitlines()[1:args.top + 1]]
    scanner = Scanner(RegistryClient(offline=not args.online))
    loaded = []
    for name in names:
        try:
            loaded.append(scanner.load(name))
        except ChainwatchError as exc:
            print(f"skip {name}: {exc}", file=sys.stderr)
    rows: dict[str, dict[str, Any]] = {}
    prof = cProfile.Profile() if args.profile else None
    for rep in range(args.repeat):
        # a fresh scanner per pass: the per-file result cache of one would answer the second
        # pass from memory and time nothing
        judge = Scanner(None)
        for target in loaded:
            if prof is not None and rep == 0:
                prof.enable()
            t0 = time.perf_counter()
            verdict = judge.analyze(target, None)
            took = time.perf_counter() - t0
            if prof is not None and rep == 0:
                prof.disable()
            ref = str(target.ref)
            js = sum(len(f.data) for f in target.files.files
                     if f.path.lower().endswith(CODE_EXT))
            found = sorted(f"{f.rule}@{f.file}:{f.line}" for f in verdict.findings)
            row = rows.setdefault(ref, {"js_bytes": js, "seconds": took, "level": verdict.level.value,
                                        "findings": found})
            row["seconds"] = min(row["seconds"], took)
        judge.close()
    scanner.close()
    seconds = sorted(r["seconds"] for r in rows.values())
    mb = sum(r["js_bytes"] for r in rows.values()) / 1e6
    digest = hashlib.sha256(json.dumps({k: (v["level"], v["findings"]) for k, v in
                                        sorted(rows.items())}).encode()).hexdigest()[:12]
    print(f"{len(rows)} packages, {mb:.1f} MB JS: {mb / max(sum(seconds), 1e-9):.2f} MB/s, "
          f"median {statistics.median(seconds):.4f} s, "
          f"p95 {seconds[min(len(seconds) - 1, int(0.95 * len(seconds)))]:.4f} s, "
          f"total {sum(seconds):.1f} s; findings digest {digest}")
    slow = sorted(rows.items(), key=lambda kv: -kv[1]["seconds"])[:5]
    print("slowest: " + ", ".join(f"{k} {v['seconds']:.2f}s" for k, v in slow))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    if args.compare:
        other = json.loads(Path(args.compare).read_text())
        for ref, row in sorted(rows.items()):
            theirs = other.get(ref)
            if theirs is None:
                continue
            a, b = set(theirs["findings"]), set(row["findings"])
            if a != b or theirs["level"] != row["level"]:
                print(f"  {ref}: {theirs['level']} -> {row['level']}; "
                      f"lost {sorted(a - b)[:4]} gained {sorted(b - a)[:4]}")
    if prof is not None:
        prof.dump_stats(args.profile)
        pstats.Stats(args.profile).sort_stats("cumulative").print_stats(30)


if __name__ == "__main__":
    main()
