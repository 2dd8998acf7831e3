#!/usr/bin/env python3
"""Importing OSV malicious-package records: time and peak memory for the real set's size.

Generates N records shaped like ossf/malicious-packages' npm entries (most name every version
with ``introduced: "0"``; some list exact versions), writes them as an all.zip, then runs
``chainwatch db import`` on it in a fresh process and reports wall time and peak memory.
Also times lookups against the filled store.

    python bench/db_import.py              # 210,000 records
    python bench/db_import.py --records 20000
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from chainwatch.intel.store import KnownBadStore


def record(i: int) -> dict[str, object]:
    name = f"@bench{i % 97}/pkg-{i}" if i % 5 == 0 else f"bench-pkg-{i}"
    affected: dict[str, object] = {"package": {"ecosystem": "npm", "name": name}}
    if i % 4 == 0:
        affected["versions"] = [f"1.0.{k}" for k in range(3)]
    else:
        affected["ranges"] = [{"type": "SEMVER", "events": [{"introduced": "0"}]}]
    return {"schema_version": "1.5.0", "id": f"MAL-2025-{i}", "modified": "2025-09-08T00:00:00Z",
            "published": "2025-09-08T00:00:00Z", "summary": f"Malicious code in {name} (npm)",
            "details": "\n---\n_-= Per source details. Do not edit below this line.=-_\n",
            "affected": [affected], "references": [{"type": "WEB",
                                                    "url": "https://example.invalid/report"}],
            "database_specific": {"malicious-packages-origins": [{"source": "bench"}]}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=210_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        zpath = Path(tmp) / "all.zip"
        with zipfile.ZipFile(zpath, "w", zipfile.ZIP_DEFLATED) as z:
            for i in range(args.records):
                z.writestr(f"MAL-2025-{i}.json", json.dumps(record(i)))
        url = f"sqlite:///{Path(tmp) / 'kb.db'}"
        measure = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, "
                   "capture_output=True); print(resource.getrusage(resource.RUSAGE_CHILDREN)"
                   ".ru_maxrss)")
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", measure, sys.executable, "-m", "chainwatch",
                               "db", "import", str(zpath), "--db", url, "-q"],
                              capture_output=True, text=True, check=True)
        seconds = time.perf_counter() - started
        peak_mb = int(done.stdout.strip()) / 1024
        store = KnownBadStore(url)
        t0 = time.perf_counter()
        lookups = 2000
        hits = sum(bool(store.lookup(f"bench-pkg-{i}", "1.0.1")) for i in range(1, lookups + 1))
        per_lookup_ms = (time.perf_counter() - t0) / lookups * 1000
        print(f"records: {args.records}  import: {seconds:.1f} s  peak memory: {peak_mb:.0f} MB  "
              f"store: {store.count()} advisories  lookup: {per_lookup_ms:.2f} ms "
              f"({hits}/{lookups} hits)")


if __name__ == "__main__":
    main()
