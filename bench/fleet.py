#!/usr/bin/env python3
"""Fleet memory at scale: record N environments, then time 'who held name@version?' queries.

    python bench/fleet.py                      # 10,000 environments of 100 packages each
    python bench/fleet.py --environments 2000
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from chainwatch.fleet import Fleet
from chainwatch.model import Environment, InstalledPackage


def environment(i: int, rng: random.Random, per_env: int) -> Environment:
    pkgs = tuple(InstalledPackage(f"pkg-{rng.randrange(5000)}", f"1.{rng.randrange(20)}.0",
                                  paths=((f"app-{i}", "x"),)) for _ in range(per_env))
    extra = (InstalledPackage("chalk", "5.6.1", paths=((f"app-{i}", "chalk"),)),) if i % 500 == 0 else ()
    return Environment(f"repo-{i}/package-lock.json", "package-lock",
                       f"repo-{i}/package-lock.json", pkgs + extra)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--environments", type=int, default=10_000)
    parser.add_argument("--packages", type=int, default=100)
    args = parser.parse_args()
    rng = random.Random(7)
    with tempfile.TemporaryDirectory() as tmp:
        fleet = Fleet(f"sqlite:///{Path(tmp) / 'fleet.db'}")
        started = time.perf_counter()
        for start in range(0, args.environments, 500):
            envs = [environment(i, rng, args.packages)
                    for i in range(start, min(start + 500, args.environments))]
            fleet.record(f"batch-{start}", envs)
        recorded = time.perf_counter() - started
        timings = []
        for spec in ["chalk@5.6.1", "chalk@^5.6.0", "pkg-42@1.3.0", "pkg-4999@>=1.10.0",
                     "absent@1.0.0"] * 10:
            t0 = time.perf_counter()
            found = fleet.query(spec)
            timings.append((time.perf_counter() - t0) * 1000)
        print(f"{args.environments} environments x {args.packages} packages recorded in "
              f"{recorded:.1f} s; query median {statistics.median(timings):.1f} ms, "
              f"max {max(timings):.1f} ms (last: {len(found)} sightings)")


if __name__ == "__main__":
    main()
