#!/usr/bin/env python3
"""Dynamic analysis measured (issue 13 D): every replica's payload seen in the sandbox, and no
CW-DYN finding above low on benign popular packages.

Replicas: every package of the replica corpus (bench/corpus/build.py: incident and class
replicas injected into real hosts, plain, hand-obfuscated and javascript-obfuscated) is run in
the real bubblewrap sandbox (``run_dynamic``, exactly what ``scan --sandbox`` adds) and checked
against the ``dynamic`` block of its spec (bench/corpus/expect.py): when the payload runs and
which events it must show. Benign: the 40 releases of bench/popular.py and the 30 hard negatives
of bench/detect.py (latest versions, cached tarballs), with the sandbox's added seconds.

Replicas are inert (hosts under .invalid, 192.0.2.0/24) and run only inside the sandbox.

    python bench/dynamic.py                  # replicas and benign sets
    python bench/dynamic.py --only replicas  # or: --only benign
    python bench/dynamic.py --match shai     # replicas whose id contains shai
    python bench/dynamic.py --offline        # cached packages only

Prints a table per set and writes bench/out/dynamic.json and bench/out/dynamic.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.corpus.build import CORPUS, build  # noqa: E402
from bench.corpus.expect import missing, observed  # noqa: E402
from bench.corpus.replica import SPECS, load  # noqa: E402
from bench.detect import HARD_NEGATIVES  # noqa: E402
from bench.popular import POPULAR  # noqa: E402
from chainwatch.archive import read_tarball  # noqa: E402
from chainwatch.errors import ChainwatchError  # noqa: E402
from chainwatch.model import PackageRef, Severity  # noqa: E402
from chainwatch.registry import RegistryClient  # noqa: E402
from chainwatch.sandbox import Outcome, run_dynamic  # noqa: E402
from chainwatch.scan import Scanner  # noqa: E402

OUT = ROOT / "bench" / "out"
ABOVE_LOW = Severity.MEDIUM.rank


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def summary(outcome: Outcome) -> dict[str, Any]:
    seen = observed(outcome.dynamic, outcome.findings)
    return {
        "ran": outcome.dynamic.ran, "reason": outcome.dynamic.reason,
        "seconds": outcome.dynamic.seconds,
        "observed": {k: sorted(v) for k, v in sorted(seen.items())},
        "findings": sorted({f"{f.rule}:{f.severity.value}" for f in outcome.findings}),
        "above_low": sorted({f.rule for f in outcome.findings
                             if f.severity.rank >= ABOVE_LOW and f.rule.startswith("CW-DYN")}),
        "phases": sorted({e.phase for e in outcome.dynamic.events}),
        "events": [e.to_dict() for e in outcome.dynamic.events[:40]],
    }


def run_replicas(match: str, offline: bool) -> list[dict[str, Any]]:
    print("building the replica corpus …", file=sys.stderr)
    build(offline=offline)
    specs = {p.stem: load(p) for p in SPECS.glob("*.yml")}
    rows: list[dict[str, Any]] = []
    for folder in sorted(CORPUS.iterdir()):
        if match not in folder.name:
            continue
        label = json.loads((folder / "label.json").read_text())
        spec = specs.get(label["spec"])
        files = read_tarball((folder / "target.tgz").read_bytes(), folder.name)
        mfile = files.get("package.json")
        manifest = json.loads(mfile.data) if mfile is not None else {}
        ref = PackageRef(str(manifest.get("name", folder.name)), str(manifest.get("version", "0")))
        print(f"\r  {len(rows) + 1:3} {folder.name[:60]:60}", end="", file=sys.stderr)
        outcome = run_dynamic(files, ref)
        row = {"id": folder.name, "spec": label["spec"], "variant": label["variant"],
               **summary(outcome)}
        if spec is None or spec.dynamic is None:
            row.update(runs="?", expected=[], missing=["(no dynamic block in the spec)"])
        else:
            row.update(runs=spec.dynamic.runs, expected=list(spec.dynamic.events),
                       why=spec.dynamic.why,
                       missing=missing(spec.dynamic, outcome.dynamic, outcome.findings)
                       if outcome.dynamic.ran else ["(sandbox did not run)"])
        rows.append(row)
    print(file=sys.stderr)
    return rows


def run_benign(names: list[str], offline: bool) -> list[dict[str, Any]]:
    scanner = Scanner(RegistryClient(offline=offline), workers=1)
    rows: list[dict[str, Any]] = []
    try:
        for name in names:
            print(f"\r  {len(rows) + 1:3} {name[:60]:60}", end="", file=sys.stderr)
            try:
                target = scanner.load(name)
            except ChainwatchError as exc:
                print(f"\n  skip {name}: {exc}", file=sys.stderr)
                continue
            started = time.monotonic()
            outcome = run_dynamic(target.files, target.ref)
            rows.append({"id": str(target.ref), "wall": round(time.monotonic() - started, 3),
                         "unpacked_mb": round(target.files.total_bytes / 1e6, 1),
                         **summary(outcome)})
    finally:
        scanner.close()
    print(file=sys.stderr)
    return rows


def replica_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| replica | runs | expected | observed | CW-DYN findings | s |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        seen = ", ".join(f"{k}" for k in r["observed"]) or "–"
        exp = ", ".join(r["expected"]) or f"– ({r.get('why', '')})"
        miss = f" **missing: {', '.join(r['missing'])}**" if r["missing"] else ""
        dyn = ", ".join(f.split(":")[0].removeprefix("CW-DYN-") for f in r["findings"]
                        if f.startswith("CW-DYN")) or "–"
        lines.append(f"| {r['id']} | {r['runs']} | {exp}{miss} | {seen} | {dyn} | "
                     f"{r['seconds']:.1f} |")
    return "\n".join(lines) + "\n"


def benign_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| package | MB | phases | CW-DYN findings | above low | s |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        dyn = ", ".join(f.removeprefix("CW-DYN-") for f in r["findings"]
                        if f.startswith("CW-DYN")) or "–"
        lines.append(f"| {r['id']} | {r['unpacked_mb']} | {', '.join(r['phases']) or '–'} | "
                     f"{dyn} | {', '.join(r['above_low']) or '–'} | {r['seconds']:.1f} |")
    return "\n".join(lines) + "\n"


def figures(name: str, rows: list[dict[str, Any]], replicas: bool) -> dict[str, Any]:
    took = [r["seconds"] for r in rows if r["ran"]]
    out: dict[str, Any] = {
        "set": name, "n": len(rows), "ran": sum(r["ran"] for r in rows),
        "p50_s": round(statistics.median(took), 2) if took else None,
        "p95_s": round(percentile(took, 0.95), 2) if took else None,
        "max_s": round(max(took), 2) if took else None,
    }
    if replicas:
        runs = [r for r in rows if r["runs"] not in ("never", "?")]
        out["with_payload"] = len(runs)
        out["all_events_seen"] = sum(not r["missing"] for r in runs)
        out["never_at_load"] = sum(r["runs"] == "never" for r in rows)
        out["undeclared"] = [r["id"] for r in rows if r["runs"] == "?"]
        out["misses"] = {r["id"]: ", ".join(r["missing"]) for r in rows if r["missing"]}
    else:
        out["above_low"] = {r["id"]: r["above_low"] for r in rows if r["above_low"]}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["replicas", "benign"])
    parser.add_argument("--match", default="", help="replicas whose id contains this")
    parser.add_argument("--names", nargs="*", help="benign packages (default: popular + hard)")
    parser.add_argument("--offline", action="store_true", help="only cached packages")
    parser.add_argument("--out", default="dynamic", help="report name under bench/out")
    args = parser.parse_args()
    report: dict[str, Any] = {"figures": []}
    md = []
    if args.only != "benign":
        rows = run_replicas(args.match, args.offline)
        report["replicas"] = rows
        report["figures"].append(figures("replicas", rows, True))
        md.append(replica_table(rows))
    if args.only != "replicas":
        names = args.names or list(dict.fromkeys(POPULAR + HARD_NEGATIVES))
        rows = run_benign(names, args.offline)
        report["benign"] = rows
        report["figures"].append(figures("benign (popular + hard negatives)", rows, False))
        md.append(benign_table(rows))
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{args.out}.json").write_text(json.dumps(report, indent=2))
    (OUT / f"{args.out}.md").write_text("\n".join(md))
    for part in md:
        print(part)
    for fig in report["figures"]:
        print(json.dumps(fig, indent=1))
    print(f"report: {OUT / (args.out + '.json')}, {OUT / (args.out + '.md')}")


if __name__ == "__main__":
    main()
