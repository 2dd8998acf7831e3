#!/usr/bin/env python3
"""Detection quality and speed: chainwatch (and optionally GuardDog) on the same packages.

Malicious side: the replica corpus (bench/corpus/build.py: inert replicas injected into real
packages, plain and obfuscated) judged against their host version, new-package replicas and the
real samples of ../shared/corpus/malware judged alone. Benign side: the latest release of the
top N packages of ../shared/corpus/top-npm.tsv alone, the same packages as real release pairs
(previous → latest) in diff mode, and hard negatives (install scripts, eval, bundles, wallets).

    python bench/detect.py                     # chainwatch only, top 300
    python bench/detect.py --top 1000          # the larger benign set
    python bench/detect.py --peer guarddog     # GuardDog on the very same tarballs, same run
    python bench/detect.py --peer guarddog --peer-path .venv-guarddog/bin/guarddog

Prints a table and writes bench/out/detect.json and bench/out/detect.md (the table of
docs/detection.md). GuardDog (3.2.0: ``guarddog npm scan FILE --output-format json``, its
kernel sandbox on) is found at --peer-path, else $CHAINWATCH_GUARDDOG, else ./.venv-guarddog,
else installed (pinned) into bench/.cache/guarddog-venv. Its risk labels map to verdicts as
no_risks_detected/low → benign, suspicious → suspicious, high_risk → malicious; a scan that
fails or exceeds --peer-timeout is counted apart, never as benign. GuardDog has no diff mode,
so its release-pair verdict is its verdict on the latest release.
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.corpus.build import CORPUS, build  # noqa: E402
from chainwatch.analysis.engine import CODE_EXT  # noqa: E402
from chainwatch.archive import read_tarball  # noqa: E402
from chainwatch.errors import ChainwatchError  # noqa: E402
from chainwatch.model import Advisory, PackageRef  # noqa: E402
from chainwatch.registry import RegistryClient  # noqa: E402
from chainwatch.scan import Loaded, Scanner  # noqa: E402

SHARED = Path(os.environ.get("CHAINWATCH_SHARED") or ROOT.parent / "shared") / "corpus"
OUT = ROOT / "bench" / "out"
PEER_VENV = ROOT / "bench" / ".cache" / "guarddog-venv"
PEER_VERSION = "3.2.0"
HARD_NEGATIVES = [
    "ajv", "handlebars", "lodash.template", "esbuild", "sharp", "puppeteer", "ethers", "web3",
    "node-forge", "next", "@swc/core", "prisma", "bcrypt", "better-sqlite3", "sqlite3",
    "playwright-core", "core-js", "protobufjs", "@sentry/cli", "electron", "canvas", "cypress",
    "viem", "@solana/web3.js", "bitcoinjs-lib", "tronweb", "webpack", "terser", "vm2", "ejs",
]
SAMPLE_LABELS: dict[str, dict[str, Any]] = yaml.safe_load(
    (ROOT / "bench" / "corpus" / "samples.yml").read_text())
GUARDDOG_LEVEL = {"no_risks_detected": "benign", "low": "benign", "suspicious": "suspicious",
                  "high_risk": "malicious"}


@dataclass
class Item:
    """One judgement: a package (and maybe its baseline) in one set; files are not kept."""

    id: str
    group: str                      # replica | sample | top | pair | hard | hard-pair
    label: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] = field(default_factory=dict)
    js_bytes: int = 0
    unpacked: int = 0
    spec: str = ""                  # how to fetch it again (registry name@version)


@dataclass
class Work:
    """A package loaded for judging: its target, tarball, and the judgements to make."""

    target: Loaded
    tarball: bytes
    judgements: list[tuple[Item, Loaded | None]]


class NoKnownBad:
    def lookup(self, name: str, version: str) -> list[Advisory]:
        return []


def js_bytes(loaded: Loaded) -> int:
    return sum(len(f.data) for f in loaded.files.files if f.path.lower().endswith(CODE_EXT))


def wrap_tgz(name: str, data: bytes) -> bytes:
    """A bare payload file as a minimal package, so both tools read the same bytes."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for path, content in (("package/package.json",
                               json.dumps({"name": name, "version": "0.0.0"}).encode()),
                              ("package/index.js", data)):
            info = tarfile.TarInfo(path)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return buf.getvalue()


def loaded_from_tgz(data: bytes, source: str) -> Loaded:
    files = read_tarball(data, source)
    manifest_file = files.get("package.json")
    manifest = json.loads(manifest_file.data) if manifest_file else {}
    return Loaded(PackageRef(str(manifest.get("name", source)),
                             str(manifest.get("version", "0.0.0"))), files)


# -- the item sets ------------------------------------------------------------------------------
def malicious_work() -> Iterator[Work]:
    for folder in sorted(CORPUS.iterdir()):
        label = json.loads((folder / "label.json").read_text())
        data = (folder / "target.tgz").read_bytes()
        base = None if label.get("new_package") else loaded_from_tgz(
            (folder / "base.tgz").read_bytes(), folder.name + "/base")
        yield Work(loaded_from_tgz(data, folder.name), data,
                   [(Item(label["id"], "replica", label), base)])
    samples = SHARED / "malware" / "real-samples.zip"
    if samples.is_file():
        with zipfile.ZipFile(samples) as z:
            for info in z.infolist():
                data = z.read(info.filename, pwd=b"infected")
                if not info.filename.endswith(".tgz"):
                    data = wrap_tgz(Path(info.filename).stem, data)
                known = next((v for k, v in SAMPLE_LABELS.items()
                              if info.filename.startswith(k)), {})
                label = {"incident": f"real sample: {known.get('incident', '?')}",
                         "expect": "malicious", "techniques": known.get("techniques", []),
                         "top_technique": known.get("techniques", [])}
                yield Work(loaded_from_tgz(data, info.filename), data,
                           [(Item(info.filename, "sample", label), None)])


def benign_work(scanner: Scanner, client: RegistryClient, names: list[str], group: str,
                pair_group: str, failed: list[dict[str, str]]) -> Iterator[Work]:
    """The latest release of each name, with its settled predecessor when it has one.

    A package that cannot be fetched or read (gone, too large, a broken tarball, out of the
    cache under --offline) is recorded in ``failed`` and the run goes on; a baseline that
    cannot be read costs only the pair judgement, which is recorded the same way.
    """
    for name in names:
        try:
            target = scanner.load(name)
            if not (target.release and target.release.tarball_url):
                raise ChainwatchError("no tarball in the registry's metadata")
            data = client.tarball(target.release.tarball_url, target.release.integrity,
                                  target.release.shasum).data
        except Exception as exc:  # one package's failure never ends the run
            failed.append({"id": name, "group": group, "reason": one_line(exc)})
            print(f"\n  skip {name}: {one_line(exc)}", file=sys.stderr)
            continue
        ref = str(target.ref)
        judgements: list[tuple[Item, Loaded | None]] = [(Item(ref, group, spec=ref), None)]
        try:
            baseline = scanner.default_baseline(target)
        except Exception as exc:
            failed.append({"id": ref, "group": pair_group, "reason": one_line(exc)})
            print(f"\n  no baseline for {ref}: {one_line(exc)}", file=sys.stderr)
            baseline = None
        if baseline is not None:
            judgements.append((Item(ref, pair_group, spec=ref), baseline))
        yield Work(target, data, judgements)


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:200]


# -- running the tools --------------------------------------------------------------------------
def run_chainwatch(scanner: Scanner, item: Item, target: Loaded, baseline: Loaded | None) -> None:
    started = time.perf_counter()
    try:
        verdict = scanner.analyze(target, baseline)
    except Exception as exc:  # counted apart as a failed judgement, never benign
        item.result["chainwatch"] = {"level": "error", "score": None, "reason": one_line(exc),
                                     "seconds": time.perf_counter() - started,
                                     "top_rule": None, "top_technique": None, "techniques": [],
                                     "top_findings": []}
        return
    top = verdict.findings[0] if verdict.findings else None
    item.result["chainwatch"] = {
        "level": verdict.level.value, "score": verdict.score,
        "seconds": time.perf_counter() - started,
        "top_rule": top.rule if top else None, "top_technique": top.technique if top else None,
        "techniques": sorted({f.technique for f in verdict.findings if not f.preexisting}),
        # what a reader needs to judge a flag: the first findings, where they are
        "top_findings": [f"{f.severity.value} {f.rule} {f.file or '-'}:{f.line or 0}"
                         for f in verdict.findings[:3]],
    }
    if verdict.level.value != "benign" and item.group not in ("replica", "sample"):
        # a false alarm: the new findings of at least medium weight, which push it over
        item.result["chainwatch"]["explanation"] = verdict.explanation
        item.result["chainwatch"]["evidence"] = [
            f"{f.rule} {f.severity.value}{' install-time' if f.install_time else ''} "
            f"{f.file}:{f.line}" for f in verdict.findings
            if not f.preexisting and f.severity.rank >= 2][:8]


def ensure_guarddog(path: str | None) -> Path:
    """The guarddog executable: given, from the environment, beside the checkout, or installed."""
    for candidate in (path, os.environ.get("CHAINWATCH_GUARDDOG"),
                      str(ROOT / ".venv-guarddog" / "bin" / "guarddog")):
        if candidate:
            exe = Path(candidate)
            if exe.is_dir():
                exe = exe / "bin" / "guarddog"
            if exe.is_file():
                return exe
            if candidate == path:
                raise SystemExit(f"error: no guarddog at {path}")
    exe = PEER_VENV / "bin" / "guarddog"
    if not exe.exists():
        print("installing guarddog into", PEER_VENV, file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], check=True)
        subprocess.run([str(PEER_VENV / "bin" / "pip"), "install", "-q",
                        f"guarddog=={PEER_VERSION}"], check=True)
    return exe


def peer_version(exe: Path) -> str:
    done = subprocess.run([str(exe), "--version"], capture_output=True, text=True, check=False,
                          timeout=60)
    return (done.stdout or done.stderr).strip().splitlines()[-1] if done.returncode == 0 else "?"


def run_guarddog(exe: Path, item: Item, tarball: bytes, workdir: Path,
                 memo: dict[str, dict[str, Any]], timeout: float = 900) -> None:
    if item.group in ("pair", "hard-pair") and item.id in memo:
        item.result["guarddog"] = memo[item.id]  # no diff mode: same verdict as on the latest
        return
    path = workdir / "package.tgz"
    path.write_bytes(tarball)  # a tarball in a private folder; GuardDog only reads it
    started = time.perf_counter()
    try:
        done = subprocess.run([str(exe), "npm", "scan", str(path), "--output-format", "json"],
                              capture_output=True, text=True, timeout=timeout, check=False)
        out = done.stdout
    except subprocess.TimeoutExpired:
        out = ""
    seconds = time.perf_counter() - started
    try:
        doc = json.loads(out)
        label = doc["risk_score"]["label"]
        level = GUARDDOG_LEVEL.get(label, "error")
        risks = [r.get("threat_rule") for r in doc.get("risks", []) if isinstance(r, dict)]
        rules = sorted({str(r) for r in risks if r})
    except (ValueError, KeyError, TypeError, AttributeError):
        level, rules = "error", []  # a failed or timed-out scan is no verdict: counted apart
    result = {"level": level, "seconds": seconds, "rules": rules}
    item.result["guarddog"] = result
    memo.setdefault(item.id, result)


_MEASURE = """
import resource, subprocess, sys
subprocess.run(sys.argv[1:], capture_output=True, check=False, timeout=900)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def peak_memory_of_largest(items: list[Item]) -> dict[str, Any]:
    """Scan the largest benign package (from the cache) in a fresh process; its peak memory.

    A helper process runs the scan as its only child, so the figure is that scan's own peak
    resident memory (worker processes included only as their own, smaller, peaks).
    """
    largest = max((i for i in items if i.group in ("top", "hard")), key=lambda i: i.unpacked,
                  default=None)
    if largest is None:
        return {}
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, sys.executable, "-m", "chainwatch", "scan",
         largest.spec, "--against", "none", "-q", "--fail-on", "never", "--format", "json"],
        capture_output=True, text=True, check=False, timeout=1000)
    return {"package": largest.id, "unpacked_mb": largest.unpacked / 1e6,
            "peak_rss_mb": int(done.stdout.strip() or 0) / 1024,
            "mode": "standalone, fresh process"}


# -- figures ----------------------------------------------------------------------------------
def rates(items: list[Item], tool: str) -> dict[str, float]:
    done = [i for i in items if tool in i.result and i.result[tool]["level"] != "error"]
    n = len(done) or 1
    return {
        "n": len(done),
        "errors": sum(1 for i in items if tool in i.result and i.result[tool]["level"] == "error"),
        "flagged_n": sum(i.result[tool]["level"] != "benign" for i in done),
        "malicious_n": sum(i.result[tool]["level"] == "malicious" for i in done),
        "suspicious_n": sum(i.result[tool]["level"] == "suspicious" for i in done),
        "flagged": sum(i.result[tool]["level"] != "benign" for i in done) / n,
        "malicious": sum(i.result[tool]["level"] == "malicious" for i in done) / n,
        "suspicious": sum(i.result[tool]["level"] == "suspicious" for i in done) / n,
    }


def technique_hits(items: list[Item]) -> float:
    scored = [i for i in items if i.label.get("top_technique")]
    if not scored:
        return 1.0
    return sum(i.result["chainwatch"]["top_technique"] in i.label["top_technique"]
               for i in scored) / len(scored)


def speed(items: list[Item], tool: str) -> dict[str, float]:
    timed = [i for i in items if tool in i.result and i.group == "top"]
    seconds = [i.result[tool]["seconds"] for i in timed]
    mb = sum(i.js_bytes for i in timed) / 1e6
    if not seconds:
        return {}
    ordered = sorted(seconds)
    # per-process start-up dominates small packages for a CLI peer; large ones amortise it
    large = [i for i in timed if i.js_bytes >= 1_000_000]
    large_mb = sum(i.js_bytes for i in large) / 1e6
    large_s = sum(i.result[tool]["seconds"] for i in large)
    return {"js_mb": mb, "seconds": sum(seconds), "mb_per_s": mb / max(sum(seconds), 1e-9),
            "median_s": statistics.median(ordered),
            "p95_s": ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))],
            "large_packages": len(large), "large_mb_per_s": large_mb / max(large_s, 1e-9)}


def report(items: list[Item], tools: list[str], memory: dict[str, Any],
           failed: list[dict[str, str]] | None = None) -> dict[str, Any]:
    groups: dict[str, list[Item]] = defaultdict(list)
    for item in items:
        groups[item.group].append(item)
    malicious = groups["replica"] + groups["sample"]
    out: dict[str, Any] = {"tools": tools, "sets": {}, "per_incident": {}, "per_technique": {},
                           "speed": {t: speed(items, t) for t in tools}, "memory": memory}
    for name, members in groups.items():
        out["sets"][name] = {t: rates(members, t) for t in tools}
    out["sets"]["malicious (replicas + samples)"] = {t: rates(malicious, t) for t in tools}
    out["right_technique_on_top"] = technique_hits(malicious)
    by_incident: dict[str, list[Item]] = defaultdict(list)
    by_technique: dict[str, list[Item]] = defaultdict(list)
    for item in malicious:
        by_incident[item.label.get("incident", "?")].append(item)
        for technique in item.label.get("techniques", []):
            by_technique[technique].append(item)
    out["per_incident"] = {k: {t: rates(v, t) for t in tools} for k, v in by_incident.items()}
    out["per_technique"] = {k: {t: rates(v, t) for t in tools} for k, v in by_technique.items()}
    if "guarddog" in tools and out["speed"].get("guarddog") and out["speed"].get("chainwatch"):
        cw, gd = out["speed"]["chainwatch"], out["speed"]["guarddog"]
        out["ratios"] = {"mb_per_s": cw["mb_per_s"] / max(gd["mb_per_s"], 1e-9),
                         "large_mb_per_s": cw["large_mb_per_s"] / max(gd["large_mb_per_s"], 1e-9)}
    out["misses"] = [{"id": i.id, "group": i.group, **i.result.get("chainwatch", {})}
                     for i in malicious if i.result["chainwatch"]["level"] == "benign"]
    out["false_alarms"] = [{"id": i.id, "group": i.group, **i.result.get("chainwatch", {})}
                           for i in items if i.group not in ("replica", "sample")
                           and i.result["chainwatch"]["level"] not in ("benign", "error")]
    # a package that could not be fetched or judged is no verdict: listed apart, never benign
    out["failed"] = list(failed or []) + [
        {"id": i.id, "group": i.group, "reason": i.result["chainwatch"].get("reason", "")}
        for i in items if i.result["chainwatch"]["level"] == "error"]
    return out


def print_table(rep: dict[str, Any]) -> None:
    tools = rep["tools"]
    print(f"\n{'set':34}" + "".join(f"{t:>34}" for t in tools))
    for name, per_tool in rep["sets"].items():
        cells = []
        for t in tools:
            r = per_tool[t]
            cells.append(f"n={r['n']:<4} flag {100 * r['flagged']:5.1f}% mal {100 * r['malicious']:5.1f}%")
        print(f"{name:34}" + "".join(f"{c:>34}" for c in cells))
    print(f"\nright technique in the top finding (chainwatch): {100 * rep['right_technique_on_top']:.1f}%")
    print("\nper incident (chainwatch flagged / malicious):")
    for name, per_tool in sorted(rep["per_incident"].items()):
        r = per_tool["chainwatch"]
        peer = f"   guarddog {100 * per_tool['guarddog']['flagged']:5.1f}%" if "guarddog" in per_tool else ""
        print(f"  {name[:60]:60} {100 * r['flagged']:5.1f}% / {100 * r['malicious']:5.1f}%{peer}")
    print("\nper technique (chainwatch flagged / malicious):")
    for name, per_tool in sorted(rep["per_technique"].items()):
        r = per_tool["chainwatch"]
        print(f"  {name:30} n={r['n']:<3} {100 * r['flagged']:5.1f}% / {100 * r['malicious']:5.1f}%")
    print("\nspeed on the latest releases (unpacked JS):")
    for t in tools:
        s = rep["speed"].get(t, {})
        if s:
            print(f"  {t:12} {s['mb_per_s']:8.2f} MB/s over {s['js_mb']:.1f} MB; per package "
                  f"median {s['median_s']:.3f} s, p95 {s['p95_s']:.3f} s; on the "
                  f"{s['large_packages']} packages with ≥1 MB of JS: {s['large_mb_per_s']:.2f} MB/s")
    if "ratios" in rep:
        print(f"  chainwatch / guarddog throughput: {rep['ratios']['mb_per_s']:.1f}x "
              f"(≥1 MB packages: {rep['ratios']['large_mb_per_s']:.1f}x)")
    if rep.get("memory"):
        m = rep["memory"]
        print(f"\npeak memory scanning the largest package ({m['package']}, "
              f"{m['unpacked_mb']:.0f} MB unpacked): {m['peak_rss_mb']:.0f} MB")
    for key in ("misses", "false_alarms"):
        if rep[key]:
            print(f"\n{key} ({len(rep[key])}):")
            for row in rep[key]:
                print(f"  {row['group']:9} {row['id'][:50]:50} {row.get('level')} "
                      f"score {row.get('score')}")
                if row.get("explanation"):
                    print(f"      {row['explanation'][:160]}")
                for line in row.get("evidence") or row.get("top_findings", [])[:3]:
                    print(f"      - {line[:150]}")
    if rep.get("failed"):
        print(f"\nnot judged (failed to fetch, read or scan; counted apart) ({len(rep['failed'])}):")
        for row in rep["failed"]:
            print(f"  {row['group']:9} {row['id'][:50]:50} {row['reason'][:100]}")


def markdown_table(rep: dict[str, Any], top: int) -> str:
    """The figures the issue asks for, one row each, a column per tool (docs/detection.md)."""
    tools = rep["tools"]
    sets = rep["sets"]

    def cell(name: str, tool: str, what: str) -> str:
        r = sets.get(name, {}).get(tool)
        if not r or not r["n"]:
            return "–"
        err = f" ({r['errors']} failed)" if r.get("errors") else ""
        if what == "flagged":
            return f"{100 * r['flagged']:.1f}% ({r['flagged_n']}/{r['n']}){err}"
        if what == "malicious":
            return f"{100 * r['malicious']:.1f}% ({r['malicious_n']}/{r['n']}){err}"
        if what == "suspicious":
            return f"{100 * r['suspicious']:.1f}% ({r['suspicious_n']}/{r['n']}){err}"
        return f"{r['malicious_n']}"

    mal = "malicious (replicas + samples)"
    rows = [
        ("replicas + real samples: flagged", mal, "flagged"),
        ("replicas + real samples: malicious", mal, "malicious"),
        ("replicas (diffed against their host): flagged", "replica", "flagged"),
        ("real samples (alone): flagged", "sample", "flagged"),
        (f"top {top} latest, standalone: suspicious", "top", "suspicious"),
        (f"top {top} latest, standalone: malicious (count)", "top", "count"),
        (f"top {top} release pairs (previous → latest): flagged", "pair", "flagged"),
        ("hard negatives, standalone: malicious", "hard", "malicious"),
        ("hard negatives, standalone: suspicious", "hard", "suspicious"),
        ("hard negatives as release pairs: flagged", "hard-pair", "flagged"),
    ]
    lines = ["| figure | " + " | ".join(tools) + " |", "|---|" + "---|" * len(tools)]
    for label, name, what in rows:
        lines.append(f"| {label} | " + " | ".join(cell(name, t, what) for t in tools) + " |")
    lines.append("| right technique in the top finding | "
                 f"{100 * rep['right_technique_on_top']:.1f}% | "
                 + " | ".join("n/a (other taxonomy)" for _ in tools[1:]) + " |"
                 if len(tools) > 1 else
                 f"| right technique in the top finding | {100 * rep['right_technique_on_top']:.1f}% |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--top", type=int, default=300, help="benign set size (300 or 1000)")
    parser.add_argument("--peer", choices=["guarddog"], help="run a peer on the same files")
    parser.add_argument("--peer-path", help="the peer's executable or venv folder")
    parser.add_argument("--peer-timeout", type=float, default=600,
                        help="seconds per peer scan (a timeout is a failed scan)")
    parser.add_argument("--offline", action="store_true", help="only cached packages")
    parser.add_argument("--no-hard", action="store_true", help="skip the hard negatives")
    parser.add_argument("--only", choices=["malicious", "top", "hard"],
                        help="judge one side only: the replicas and samples, the top N, or the "
                             "hard negatives (each alone and as a release pair)")
    args = parser.parse_args()

    if args.only in (None, "malicious"):
        print("building the replica corpus …", file=sys.stderr)
        build(offline=args.offline)
    client = RegistryClient(offline=args.offline)
    # the benchmark measures the detectors: the built-in known-bad list would otherwise answer
    # for replicas that land on the very versions the real attackers published
    scanner = Scanner(client, known_bad=NoKnownBad())
    names = [line.split("\t")[0] for line in
             (SHARED / "top-npm.tsv").read_text().splitlines()[1:args.top + 1]]
    works: Iterable[Work] = malicious_work() if args.only in (None, "malicious") else iter(())
    failed: list[dict[str, str]] = []
    if args.only in (None, "top"):
        works = itertools.chain(works, benign_work(scanner, client, names, "top", "pair", failed))
    if not args.no_hard and args.only in (None, "hard"):
        works = itertools.chain(works, benign_work(scanner, client, HARD_NEGATIVES, "hard",
                                                   "hard-pair", failed))
    tools = ["chainwatch"] + ([args.peer] if args.peer else [])
    exe = ensure_guarddog(args.peer_path) if args.peer == "guarddog" else None
    if exe is not None:
        print(f"peer: guarddog {peer_version(exe)} at {exe}", file=sys.stderr)
    memo: dict[str, dict[str, Any]] = {}
    items: list[Item] = []
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o700)
        for n, work in enumerate(works, 1):
            print(f"\r  {n} packages judged; now {str(work.target.ref)[:40]:40}", end="",
                  file=sys.stderr)
            for item, baseline in work.judgements:
                item.js_bytes, item.unpacked = js_bytes(work.target), work.target.files.total_bytes
                run_chainwatch(scanner, item, work.target, baseline)
                if exe is not None:
                    run_guarddog(exe, item, work.tarball, Path(tmp), memo, args.peer_timeout)
                items.append(item)
    print(file=sys.stderr)
    scanner.close()
    memory = peak_memory_of_largest(items)
    rep = report(items, tools, memory, failed)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "detect.json").write_text(json.dumps(rep, indent=2))
    print_table(rep)
    (OUT / "detect.md").write_text(markdown_table(rep, args.top))
    print(f"\nreport: {OUT / 'detect.json'}, {OUT / 'detect.md'}")


if __name__ == "__main__":
    main()
