#!/usr/bin/env python3
"""Scan speed: MB/s of unpacked JS scanned, and the median time of a patch-release diff.

Downloads (once, cached by integrity) the latest release of each package and the release before
it, then times analysis only (not the download). Prints a table (rss: the process peak so far,
downloads included) and writes
bench/out/scan_speed.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time
from pathlib import Path
from typing import Any

from chainwatch.analysis.engine import CODE_EXT
from chainwatch.registry import RegistryClient
from chainwatch.scan import Scanner

DEFAULT = ["chalk", "debug", "lodash", "react", "express", "axios", "esbuild", "ethers",
           "typescript", "next"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--packages", nargs="*", default=DEFAULT)
    parser.add_argument("--offline", action="store_true", help="use only the cache")
    args = parser.parse_args()
    scanner = Scanner(RegistryClient(offline=args.offline))
    rows: list[dict[str, Any]] = []
    for name in args.packages:
        target = scanner.load(name)
        baseline = scanner.default_baseline(target)
        js = sum(len(f.data) for f in target.files.files if f.path.lower().endswith(CODE_EXT))
        t0 = time.perf_counter()
        alone = scanner.analyze(target, None)
        t_alone = time.perf_counter() - t0
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # peak so far
        t_diff = None
        if baseline is not None:
            t0 = time.perf_counter()
            scanner.analyze(target, baseline)
            t_diff = time.perf_counter() - t0
        rows.append({"package": str(target.ref), "baseline": str(baseline.ref) if baseline else None,
                     "js_mb": js / 1e6, "standalone_s": t_alone, "diff_s": t_diff,
                     "peak_mb": peak / 1e6, "verdict_alone": alone.level.value})
        print(f"{target.ref!s:28} {js / 1e6:8.2f} MB JS  alone {t_alone:7.2f}s "
              f"({js / 1e6 / max(t_alone, 1e-9):6.1f} MB/s)  diff "
              f"{'-' if t_diff is None else f'{t_diff:6.2f}s'}  rss {peak / 1e6:7.1f} MB  "
              f"{alone.level.value}")
    total_mb = sum(float(r["js_mb"]) for r in rows)
    total_s = sum(float(r["standalone_s"]) for r in rows)
    diffs = [float(r["diff_s"]) for r in rows if r["diff_s"] is not None]
    summary = {"mb_per_s": total_mb / total_s if total_s else 0.0,
               "median_diff_s": statistics.median(diffs) if diffs else None,
               "packages": rows}
    print(f"\nthroughput: {summary['mb_per_s']:.1f} MB/s of unpacked JS over {total_mb:.1f} MB")
    if diffs:
        print(f"median patch-release diff: {summary['median_diff_s']:.3f} s over {len(diffs)} pairs")
    out = Path(__file__).parent / "out"
    out.mkdir(exist_ok=True)
    (out / "scan_speed.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
