"""Render time of the ``chainwatch serve`` pages over a filled database (issue 15).

Fills a temporary SQLite database with N verdicts (1 in 500 malicious, 1 in 97 suspicious)
and N environments (1 in 50 holding chalk@5.6.1), then asks each page R times through the
whole application (httpx in process, no network, no token) and prints the median and the
slowest time and the page's size. Target: every page's median under 200 ms at 10k/10k.

    .venv/bin/python bench/pages.py                 # 10,000 verdicts and environments
    .venv/bin/python bench/pages.py -n 50000 --runs 25
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, insert

PAGES = ["/", "/verdicts", "/verdicts?level=malicious", "/verdicts/sha512-5", "/incidents",
         "/exposure?package=chalk@5.6.1", "/environments", "/decisions", "/overview/alerts"]
TARGET_MS = 200.0


def fill(engine: Engine, n: int) -> None:
    from chainwatch.fleet import environments, holdings
    from chainwatch.verdicts import verdicts

    now = datetime.now(UTC)
    rows: list[dict[str, Any]] = []
    for i in range(n):
        level = "malicious" if i % 500 == 0 else "suspicious" if i % 97 == 0 else "benign"
        at = now - timedelta(minutes=i)
        doc = {"schema": "chainwatch.scan/1", "package": f"p{i}", "version": "1.0.0",
               "verdict": level, "score": 0, "findings": [], "publisher": f"u{i % 300}",
               "published": at.isoformat()}
        rows.append({"key": f"sha512-{i}", "package": f"p{i}", "version": "1.0.0",
                     "integrity": f"sha512-{i}", "level": level, "score": 0, "baseline": None,
                     "explanation": "", "top_rule": None, "top_message": None,
                     "scanned_at": at.isoformat(timespec="seconds"), "elapsed_s": 0.1,
                     "document": json.dumps(doc)})
    with engine.begin() as conn:
        conn.execute(insert(verdicts), rows)
        for k in range(n):
            key = conn.execute(insert(environments).values(
                label=f"env{k}", kind="package-lock", source=f"env{k}/package-lock.json",
                recorded_at=now.isoformat())).inserted_primary_key
            assert key is not None
            conn.execute(insert(holdings).values(
                environment=key[0], name="chalk", version="5.6.1" if k % 50 == 0 else "5.6.0",
                dev=False, path=f"env{k} > chalk"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=10_000, help="verdicts and environments")
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()

    from chainwatch.db import connect
    from chainwatch.serve.app import create_app

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Starlette's TestClient announces its move
        from starlette.testclient import TestClient

    with tempfile.TemporaryDirectory() as tmp:
        engine = connect(f"sqlite:///{Path(tmp) / 'pages.db'}")
        started = time.perf_counter()
        fill(engine, args.n)
        print(f"filled {args.n} verdicts and {args.n} environments in "
              f"{time.perf_counter() - started:.1f} s")
        slow = []
        with TestClient(create_app(engine, token=None), base_url="http://127.0.0.1") as client:
            for path in PAGES:
                times = []
                for _ in range(args.runs):
                    t = time.perf_counter()
                    response = client.get(path)
                    times.append((time.perf_counter() - t) * 1000)
                    if response.status_code != 200:
                        raise SystemExit(f"{path}: HTTP {response.status_code}")
                p50 = statistics.median(times)
                slow += [path] if p50 > TARGET_MS else []
                print(f"{path:32} p50 {p50:7.1f} ms  max {max(times):7.1f} ms  "
                      f"{len(response.content) / 1024:6.1f} KiB")
        engine.dispose()
    print(f"target: median under {TARGET_MS:.0f} ms: " + (f"missed by {', '.join(slow)}"
                                                         if slow else "met by every page"))


if __name__ == "__main__":
    main()
