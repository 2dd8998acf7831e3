"""Start-up time of the ``chainwatch`` command line (issue 14).

Runs each command as a new process, as a user does (``python -m chainwatch ...``), N times
after one warm-up run, and prints the median wall time and the median CPU time (user + sys of
the child: less sensitive to other work on a shared machine) against the targets:
``--version`` and ``--help`` 0.3 s, a whole-process ``scan`` of a small local tarball with
``--against none`` 0.4 s. Then, per command, which heavy libraries it imported at all, and
the imports that cost the most (``-X importtime``, cumulative).

    .venv/bin/python bench/startup.py            # 7 runs each
    .venv/bin/python bench/startup.py --runs 15 --top 25

The package measured is the one ``python -m chainwatch`` finds: set PYTHONPATH to measure
another checkout (a "before" figure). Bytecode is cached (in a temporary PYTHONPYCACHEPREFIX)
as an installed package has it, even where PYTHONDONTWRITEBYTECODE is set; ``--as-is`` keeps
the environment as it is (every module compiled from source on every run when it is set).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

HEAVY = ("sqlalchemy", "starlette", "uvicorn", "stix2", "jinja2", "httpx", "yara", "tree_sitter",
         "rich", "yaml", "nodesemver", "prometheus_client", "orjson", "cyclonedx")

TARGETS = {"--version": 0.3, "--help": 0.3, "scan --help": 0.3, "scan small.tgz": 0.4}


def small_tarball(folder: Path) -> Path:
    """An inert two-file package, packed as npm packs it (everything under package/)."""
    files = {
        "package/package.json": json.dumps({"name": "cw-startup-probe", "version": "1.0.0",
                                            "main": "index.js", "license": "MIT"}),
        "package/index.js": "'use strict';\nmodule.exports = (a, b) => a + b;\n",
    }
    path = folder / "cw-startup-probe-1.0.0.tgz"
    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return path


def run(python: str, args: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds (user + sys of the child) and exit code of one process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run([python, "-m", "chainwatch", *args], env=env, capture_output=True,
                          check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done.returncode


def import_profile(python: str, args: list[str], env: dict[str, str]) -> list[tuple[int, int, str]]:
    """(cumulative µs, depth, module) of every import one run makes, from -X importtime."""
    done = subprocess.run([python, "-X", "importtime", "-m", "chainwatch", *args], env=env,
                          capture_output=True, text=True, check=False)
    rows = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = line[len("import time:"):].split("|")
        depth = (len(name) - len(name.lstrip(" "))) // 2
        rows.append((int(cumulative), depth, name.strip()))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="runs per command (median)")
    parser.add_argument("--top", type=int, default=15, help="imports listed per command")
    parser.add_argument("--python", default=sys.executable, help="interpreter to run")
    parser.add_argument("--as-is", action="store_true",
                        help="keep PYTHONDONTWRITEBYTECODE and the bytecode cache as they are")
    opts = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="cw-startup-") as tmp:
        home = Path(tmp)
        env = {**os.environ, "CHAINWATCH_CACHE_DIR": str(home / "cache"),
               "CHAINWATCH_DATA_DIR": str(home / "data"), "NO_COLOR": "1"}
        for name in ("CHAINWATCH_DEBUG", "CHAINWATCH_DB"):
            env.pop(name, None)
        if not opts.as_is:
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = str(home / "pycache")
        tgz = small_tarball(home)
        cases = {"--version": ["--version"], "--help": ["--help"],
                 "scan --help": ["scan", "--help"],
                 "scan small.tgz": ["scan", str(tgz), "--against", "none", "--offline", "-q"]}
        print(f"bytecode: {'as the environment has it' if opts.as_is else 'cached'}; "
              f"runs per command: {opts.runs} after a warm-up")
        print(f"{'command':16} {'wall p50':>9} {'wall min':>9} {'cpu p50':>8} {'target':>7}  exit")
        profiles = {}
        for label, args in cases.items():
            run(opts.python, args, env)  # warm-up: bytecode caches, rule caches
            walls, cpus, codes = [], [], set()
            for _ in range(opts.runs):
                wall, cpu, code = run(opts.python, args, env)
                walls.append(wall)
                cpus.append(cpu)
                codes.add(code)
            target = TARGETS[label]
            wall50 = statistics.median(walls)
            mark = "ok" if wall50 <= target else "OVER"
            print(f"{label:16} {wall50:8.3f}s {min(walls):8.3f}s {statistics.median(cpus):7.3f}s "
                  f"{target:6.1f}s  "
                  f"{','.join(map(str, sorted(codes))):4}  {mark}")
            profiles[label] = import_profile(opts.python, args, env)

    for label, rows in profiles.items():
        loaded = {name.split(".")[0] for _, _, name in rows}
        heavy = [h for h in HEAVY if h in loaded]
        total = sum(c for c, d, _ in rows if d == 0) / 1e6
        print(f"\n{label}: {len(rows)} modules imported, {total:.3f} s in imports; heavy: "
              f"{', '.join(heavy) or 'none'}")
        for cumulative, depth, name in sorted(rows, reverse=True)[:opts.top]:
            print(f"  {cumulative / 1e6:7.3f}s  {'  ' * depth}{name}")


if __name__ == "__main__":
    main()
