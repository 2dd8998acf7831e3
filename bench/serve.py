#!/usr/bin/env python3
"""``chainwatch serve`` under a team's data: p50/p95 latency per API route.

A database is filled (bulk inserts) with ``--verdicts`` verdicts (default 10,000: real
``chainwatch.scan/1`` documents made once by scanning the bundled examples, then given other
names, versions, integrities, levels and times; 90% benign, 7% suspicious, 3% malicious, over
30 days, each with its watcher row so the overview's latency chart has data), ``--environments``
environments (default 10,000 of ``--packages`` packages each, default 100, drawn from the top
npm names; 2% hold chalk@5.6.1), ``--decisions`` gate decisions (default 10,000) and 500 alerts.
Then ``chainwatch serve --db URL`` runs (its own process, uvicorn, loopback, with a
token), and ``--requests`` GETs (default 200) are made per route, one at a time: the verdict
list with and without each filter, one verdict, exposure, environments, decisions, alerts and
the overview page; the overview is also timed in process (``ReadModel.overview``), which is
what the page and its refresh read. Printed: fill time, database size, p50/p95 per route,
status codes, load average.

    python bench/serve.py
    python bench/serve.py --verdicts 2000 --environments 2000 --requests 50
    python bench/serve.py --db postgresql+psycopg://localhost/cw   # an empty database
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import copy
import hashlib
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))
from tests.integration.verdaccio import free_port, wait_up  # noqa: E402

CACHE = ROOT / "bench" / ".cache" / "serve"
NAMES = [n.strip() for n in (ROOT / "src" / "chainwatch" / "data" / "top-npm.txt")
         .read_text().splitlines() if n.strip() and not n.startswith("#")]
TOKEN = "bench-token-0123456789abcdef"
CHUNK = 5_000


def templates() -> dict[str, dict[str, Any]]:
    """Real scan documents of the bundled examples (a malicious and a benign one), made once."""
    CACHE.mkdir(parents=True, exist_ok=True)
    out: dict[str, dict[str, Any]] = {}
    for level, args in (("malicious", ["examples/left-padder-1.0.1", "--against",
                                       "examples/left-padder-1.0.0"]),
                        ("benign", ["examples/left-padder-1.0.0", "--against", "none"])):
        path = CACHE / f"{level}.json"
        if not path.exists():
            run = subprocess.run([sys.executable, "-m", "chainwatch", "scan", *args,
                                  "--no-remember", "--format", "json", "--fail-on", "never"],
                                 cwd=ROOT, capture_output=True, text=True, check=False)
            path.write_text(json.dumps(json.loads(run.stdout)["results"][0]))
        out[level] = json.loads(path.read_text())
    return out


def sri(seed: str) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(seed.encode()).digest()).decode()


def verdict_rows(count: int, rng: random.Random, now: datetime,
                 docs: dict[str, dict[str, Any]]) -> tuple[list[dict[str, Any]],
                                                          list[dict[str, Any]]]:
    rows: list[dict[str, Any]] = []
    watch: list[dict[str, Any]] = []
    for i in range(count):
        name = NAMES[i % len(NAMES)]
        version = f"{1 + i // len(NAMES)}.{rng.randrange(30)}.{rng.randrange(30)}"
        roll = rng.random()
        level = "malicious" if roll < 0.03 else "suspicious" if roll < 0.10 else "benign"
        doc = copy.deepcopy(docs["benign" if level == "benign" else "malicious"])
        integrity = sri(f"{name}@{version}#{i}")
        published = now - timedelta(seconds=rng.uniform(0, 30 * 86400))
        scanned = published + timedelta(seconds=rng.expovariate(1 / 40))
        doc.update(package=name, version=version, integrity=integrity, verdict=level,
                   score={"benign": rng.randrange(0, 20), "suspicious": rng.randrange(40, 70),
                          "malicious": rng.randrange(80, 101)}[level],
                   source=f"{name}@{version}", origin="registry", publisher=f"maint-{i % 700}",
                   published=published.isoformat(timespec="seconds"),
                   baseline=f"{1 + i // len(NAMES)}.0.0")
        top = doc["findings"][0] if doc["findings"] else None
        rows.append({"key": integrity, "package": name, "version": version,
                     "integrity": integrity, "level": level, "score": doc["score"],
                     "baseline": doc["baseline"], "explanation": doc["explanation"][:4000],
                     "top_rule": top["rule"] if top else None,
                     "top_message": top["message"][:1000] if top else None,
                     "scanned_at": scanned.isoformat(timespec="seconds"),
                     "elapsed_s": rng.uniform(0.05, 3), "document": json.dumps(doc)})
        watch.append({"name": name, "version": version,
                      "published": published.isoformat(timespec="seconds"),
                      "publisher": doc["publisher"], "seen_at": scanned.timestamp() - 5,
                      "status": "done", "attempts": 1, "level": level,
                      "scanned_at": scanned.timestamp()})
    return rows, watch


def fill(url: str, args: argparse.Namespace) -> dict[str, Any]:
    """Fill an empty database; returns what the routes ask for (an integrity, a package)."""
    from sqlalchemy import func, insert, select

    from chainwatch.db import connect
    from chainwatch.fleet import environments, holdings
    from chainwatch.gate.decisions import decisions
    from chainwatch.verdicts import verdicts
    from chainwatch.watch.state import alerts, deliveries
    from chainwatch.watch.state import versions as watched

    engine = connect(url)
    with engine.connect() as conn:
        if conn.execute(select(func.count()).select_from(verdicts)).scalar_one():
            raise SystemExit(f"{url} already holds verdicts: give an empty database")
    rng = random.Random(15)
    now = datetime.now(UTC)
    docs = templates()
    timing: dict[str, float] = {}

    started = time.perf_counter()
    rows, watch = verdict_rows(args.verdicts, rng, now, docs)
    with engine.begin() as conn:
        for i in range(0, len(rows), CHUNK):
            conn.execute(insert(verdicts), rows[i:i + CHUNK])
            conn.execute(insert(watched), watch[i:i + CHUNK])
    timing["verdicts"] = time.perf_counter() - started

    started = time.perf_counter()
    versions = {n: [f"{a}.{b}.0" for a in range(1, 4) for b in range(5)] for n in NAMES}
    marks = ", ".join(["?" if engine.dialect.paramstyle == "qmark" else "%s"] * 5)
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":  # the index of a million rows fits in memory
            conn.exec_driver_sql("PRAGMA cache_size=-262144")
        for first in range(0, args.environments, 500):
            envs, held = [], []
            for e in range(first, min(first + 500, args.environments)):
                pk = e + 1
                recorded = now - timedelta(seconds=rng.uniform(0, 30 * 86400))
                envs.append({"pk": pk, "label": f"github.com/acme/repo-{e}@{e:07x}",
                             "kind": "package-lock", "source": f"repo-{e}/package-lock.json",
                             "recorded_at": recorded.isoformat(timespec="seconds")})
                chosen = rng.sample(NAMES, args.packages)
                if e % 50 == 0:
                    chosen[0] = "chalk"
                for n in chosen:
                    version = "5.6.1" if n == "chalk" and e % 50 == 0 else rng.choice(versions[n])
                    held.append((pk, n, version, rng.random() < 0.3,
                                 f"(root) > {rng.choice(NAMES)} > {n}"))
            conn.execute(insert(environments), envs)
            # the driver's executemany with plain tuples: a million rows in seconds
            conn.exec_driver_sql(f"INSERT INTO {holdings.name} (environment, name, version, dev, "
                                 f"path) VALUES ({marks})", held)
    timing["environments"] = time.perf_counter() - started

    started = time.perf_counter()
    dec = []
    for _ in range(args.decisions):
        name = rng.choice(NAMES)
        action = rng.choices(("block", "warn", "allow"), (8, 3, 1))[0]
        rule = rng.choice(("known-bad", "min-age", "scan", "new-install-script", "unservable"))
        when = now - timedelta(seconds=rng.uniform(0, 30 * 86400))
        dec.append({"time": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "origin": rng.choice(("check", "proxy")), "package": name,
                    "version": f"1.{rng.randrange(30)}.0", "action": action, "rule": rule,
                    "reason": f"{rule}: published 3 hours ago, the policy wants 48 hours",
                    "source": f"repo-{rng.randrange(args.environments)}/package-lock.json",
                    "once": None})
    with engine.begin() as conn:
        for i in range(0, len(dec), CHUNK):
            conn.execute(insert(decisions), dec[i:i + CHUNK])
        flagged = [r for r in rows if r["level"] != "benign"][:500]
        conn.execute(insert(alerts), [{
            "id": f"release:{r['package']}@{r['version']}", "kind": "release",
            "created_at": datetime.fromisoformat(r["scanned_at"]).timestamp(),
            "payload": json.dumps({"schema": "chainwatch.alert/1", "kind": "release",
                                   "package": r["package"], "version": r["version"],
                                   "verdict": r["level"], "score": r["score"],
                                   "integrity": r["integrity"]})} for r in flagged])
        conn.execute(insert(deliveries), [{
            "alert_id": f"release:{r['package']}@{r['version']}", "sink": "webhook:1",
            "status": "sent", "attempts": 1, "next_attempt": 0.0,
            "sent_at": datetime.fromisoformat(r["scanned_at"]).timestamp() + 1}
            for r in flagged])
    timing["decisions+alerts"] = time.perf_counter() - started
    engine.dispose()
    sample = next((r for r in rows[len(rows) // 2:] if r["level"] == "malicious"),
                  rows[len(rows) // 2])
    return {"timing": timing, "integrity": sample["integrity"], "package": sample["package"]}


def routes(sample: dict[str, Any]) -> list[tuple[str, str]]:
    since = (datetime.now(UTC) - timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%S")
    from urllib.parse import quote

    return [
        ("verdicts", "/api/v1/verdicts"),
        ("verdicts ?level=malicious", "/api/v1/verdicts?level=malicious"),
        ("verdicts ?package=", f"/api/v1/verdicts?package={quote(sample['package'])}"),
        ("verdicts ?since=2 days", f"/api/v1/verdicts?since={since}"),
        ("verdicts page 2 (cursor)", "CURSOR"),
        ("verdict (full document)", f"/api/v1/verdicts/{quote(sample['integrity'], safe='')}"),
        ("exposure chalk@5.6.1", "/api/v1/exposure?package=chalk@5.6.1"),
        ("exposure debug@^1 (range)", f"/api/v1/exposure?package={quote('debug@^1')}"),
        ("environments", "/api/v1/environments"),
        ("decisions", "/api/v1/decisions"),
        ("decisions ?action=warn", "/api/v1/decisions?action=warn"),
        ("overview (page)", "/"),
        ("alerts", "/api/v1/alerts"),
    ]


def logged_in(base: str) -> httpx.Client:
    """A client with a page session, as a browser gets one: the login form, then its post."""
    client = httpx.Client(base_url=base, timeout=60)
    form = client.get("/login").text
    fields = {name: value for name, value in re.findall(
        r'name="(csrf|nonce)" value="([^"]*)"', form)}
    done = client.post("/login", data={**fields, "next": "/", "token": TOKEN},
                       headers={"Origin": base})
    if done.status_code != 303:
        raise SystemExit(f"logging in to the pages failed: HTTP {done.status_code}")
    return client


def measure(base: str, sample: dict[str, Any], requests: int) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    pages = logged_in(base)  # already open (it logged in): closed, never entered
    with httpx.Client(base_url=base, headers=headers, timeout=60) as api, \
            contextlib.closing(pages):
        first = api.get("/api/v1/verdicts")
        cursor = first.json().get("next_cursor") if first.status_code == 200 else None
        print(f"{'route':30} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}  status  bytes")
        for label, path in routes(sample):
            if path == "CURSOR":
                if not cursor:
                    print(f"{label:30} (no cursor in the first page)")
                    continue
                path = f"/api/v1/verdicts?cursor={cursor}"
            client = api if path.startswith("/api/") else pages  # a page needs the session
            client.get(path)  # warm
            times, statuses, size = [], set(), 0
            for _ in range(requests):
                t0 = time.perf_counter()
                r = client.get(path)
                times.append((time.perf_counter() - t0) * 1000)
                statuses.add(r.status_code)
                size = len(r.content)
            times.sort()
            p95 = times[min(len(times) - 1, int(len(times) * 0.95))]
            print(f"{label:30} {statistics.median(times):8.2f} {p95:8.2f} {times[-1]:8.2f}  "
                  f"{','.join(map(str, sorted(statuses))):6}  {size}")


def overview_in_process(url: str, rounds: int) -> None:
    from chainwatch.db import connect
    from chainwatch.serve.queries import ReadModel

    model = ReadModel(connect(url))
    model.overview()  # warm
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        model.overview()
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    p95 = times[min(len(times) - 1, int(len(times) * 0.95))]
    print(f"{'overview (ReadModel, in process)':30} {statistics.median(times):8.2f} {p95:8.2f} "
          f"{times[-1]:8.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--verdicts", type=int, default=10_000)
    parser.add_argument("--environments", type=int, default=10_000)
    parser.add_argument("--packages", type=int, default=100)
    parser.add_argument("--decisions", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--db", help="an empty database URL (default: a temporary SQLite file)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.db or f"sqlite:///{Path(tmp) / 'serve.db'}"
        sample = fill(url, args)
        timing = ", ".join(f"{k} {v:.1f} s" for k, v in sample["timing"].items())
        size = ""
        if url.startswith("sqlite:///"):
            size = f"; {Path(url.removeprefix('sqlite:///')).stat().st_size / 1e6:.0f} MB"
        print(f"filled: {args.verdicts} verdicts, {args.environments} environments x "
              f"{args.packages} packages, {args.decisions} decisions, alerts ({timing}{size})")
        port = free_port()
        env = {**os.environ, "CHAINWATCH_DATA_DIR": tmp, "CHAINWATCH_CACHE_DIR": tmp,
               "CHAINWATCH_TOKEN": TOKEN}
        # as a user starts it
        proc = subprocess.Popen([sys.executable, "-m", "chainwatch", "serve", "--db", url,
                                 "--listen", f"127.0.0.1:{port}"], env=env)
        try:
            wait_up(f"http://127.0.0.1:{port}/healthz", tries=600)
            print(f"{args.requests} sequential requests per route (chainwatch serve, loopback):")
            measure(f"http://127.0.0.1:{port}", sample, args.requests)
        finally:
            proc.terminate()
            proc.wait(timeout=10)
        overview_in_process(url, max(5, args.requests // 10))
        load = os.getloadavg()
        print(f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
