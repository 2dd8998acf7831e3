#!/usr/bin/env python3
"""``chainwatch check`` on real lockfiles: cold (empty cache and database), warm (a second run
within the packument TTL) and revalidating (TTL 0s: every packument asked again).

Each lockfile of the corpus (default ``../shared/corpus/lockfiles``) is copied into a folder of
its own under the name its package manager gives it and checked by a fresh ``chainwatch``
process with its own cache and data folders, so runs never share anything but the page cache.
Prints wall time, CPU time (user + system of the process: the figure that does not move with
the machine's load), peak RSS and the load average, and writes bench/out/check_speed.json.
Needs the npm registry; prints ``skipped`` and exits 0 when it cannot be reached.

    .venv/bin/python bench/check_speed.py                       # every lockfile, cold + warm
    .venv/bin/python bench/check_speed.py --only hono --runs 3  # medians of three
    .venv/bin/python bench/check_speed.py --src /tmp/old/src    # another tree, for "before"

Bytecode is cached (in a temporary PYTHONPYCACHEPREFIX, one per tree, compiled by a warm-up
run) as an installed package has it, even where PYTHONDONTWRITEBYTECODE is set; ``--as-is``
keeps the environment as it is (every chainwatch module compiled from source on every run).
``--jobs N`` is passed to ``check``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
CORPUS = HERE.parent.parent / "shared" / "corpus" / "lockfiles"
#: corpus file name ending → the name its package manager reads
NAMES = {".package-lock.json": "package-lock.json", ".pnpm-lock.yaml": "pnpm-lock.yaml",
         ".yarn-berry.lock": "yarn.lock", ".yarn-classic.lock": "yarn.lock",
         ".bun.lock": "bun.lock"}


def lockfiles(corpus: Path, only: list[str]) -> list[tuple[str, Path, str]]:
    found = []
    for path in sorted(corpus.iterdir()):
        for ending, name in NAMES.items():
            if path.name.endswith(ending):
                label = path.name[: -len(ending)]
                if not only or label in only:
                    found.append((label, path, name))
    return found


def reachable(registry: str) -> bool:
    try:
        return httpx.get(registry + "chalk", timeout=10.0).status_code == 200
    except httpx.HTTPError:
        return False


def run(project: Path, cache: Path, data: Path, ttl: str | None,
        src: str | None, extra: list[str] | None = None,
        pycache: Path | None = None) -> dict[str, Any]:
    env = {**os.environ, "CHAINWATCH_CACHE_DIR": str(cache), "CHAINWATCH_DATA_DIR": str(data)}
    if pycache is not None:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(pycache)
    env.pop("CHAINWATCH_PACKUMENT_TTL", None)
    if ttl is not None:
        env["CHAINWATCH_PACKUMENT_TTL"] = ttl
    if src:
        env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "chainwatch", "check", str(project), "-q",
                           "--format", "json", "--timeout", "600", *(extra or [])],
                          env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        summary = json.loads(proc.stdout).get("summary", {})
    except ValueError:
        summary = {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1]}
    return {"wall_s": round(wall, 2),
            "cpu_s": round(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime, 2),
            "peak_mb": round(after.ru_maxrss / 1024, 1), "exit": proc.returncode,
            "checked": summary.get("checked"), "blocked": summary.get("blocked"),
            "warned": summary.get("warned"), "error": summary.get("error"),
            "load": round(os.getloadavg()[0], 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--only", nargs="*", default=[], help="lockfile labels (e.g. hono vite)")
    parser.add_argument("--runs", type=int, default=1, help="cold/warm pairs per lockfile")
    parser.add_argument("--revalidate", action="store_true",
                        help="also a third run with CHAINWATCH_PACKUMENT_TTL=0s")
    parser.add_argument("--src", help="a chainwatch src/ folder to run instead of the installed one")
    parser.add_argument("--registry", default="https://registry.npmjs.org/")
    parser.add_argument("--jobs", type=int, help="check --jobs N (default: check's own)")
    parser.add_argument("--as-is", action="store_true",
                        help="keep PYTHONDONTWRITEBYTECODE and the bytecode cache as they are")
    args = parser.parse_args()
    extra = ["--jobs", str(args.jobs)] if args.jobs else []
    if not args.corpus.is_dir():
        print(f"skipped: no corpus at {args.corpus}")
        return
    if not reachable(args.registry):
        print(f"skipped: the registry {args.registry} cannot be reached")
        return
    rows: list[dict[str, Any]] = []
    pyc = tempfile.TemporaryDirectory(prefix="cw-check-pyc-")
    pycache = None if args.as_is else Path(pyc.name)
    if pycache is not None:  # compile once, outside the figures: an installed package has .pyc
        with tempfile.TemporaryDirectory(prefix="cw-check-speed-") as tmp:
            (Path(tmp) / "package.json").write_text(
                '{"name": "warm-up", "dependencies": {"chalk": "5.3.0"}}')
            run(Path(tmp), Path(tmp) / "cache", Path(tmp) / "data", None, args.src,
                ["--offline"], pycache)
    for label, path, name in lockfiles(args.corpus, args.only):
        for i in range(args.runs):
            with tempfile.TemporaryDirectory(prefix="cw-check-speed-") as tmp:
                root = Path(tmp)
                project = root / label
                project.mkdir()
                shutil.copyfile(path, project / name)
                runs = {kind: run(project, root / "cache", root / "data", None, args.src,
                                  extra, pycache) for kind in ("cold", "warm")}
                if args.revalidate:
                    runs["revalidate"] = run(project, root / "cache", root / "data", "0s",
                                             args.src, extra, pycache)
            row = {"lockfile": label, "run": i + 1, **runs}
            rows.append(row)
            print(f"{label:12} run {i + 1}  " + "  ".join(
                f"{kind} {r['wall_s']:6.2f}s wall {r['cpu_s']:5.2f}s cpu "
                f"(exit {r['exit']}, {r['checked']} checked, load {r['load']})"
                for kind, r in runs.items()), flush=True)
    for kind in ("cold", "warm", "revalidate"):
        walls = [r[kind]["wall_s"] for r in rows if kind in r]
        cpus = [r[kind]["cpu_s"] for r in rows if kind in r]
        if walls:
            print(f"{kind:10} median {statistics.median(walls):6.2f}s wall, "
                  f"{statistics.median(cpus):5.2f}s cpu; max {max(walls):6.2f}s wall")
    pyc.cleanup()
    out = HERE / "out"
    out.mkdir(exist_ok=True)
    (out / "check_speed.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
