#!/usr/bin/env python3
"""Reading an installed node_modules tree: time and peak memory in a fresh process.

Builds a synthetic npm-style tree (``--packages`` roots, a tenth of them scoped, every tenth
with a nested ``node_modules`` of three, each root with a test fixture ``package.json`` that
must not count) and a pnpm-style one (the same packages in ``.pnpm/<key>/node_modules/`` with
top-level links), then inventories ``path/to/node_modules`` for each and checks the count.

    python bench/inventory_tree.py [--packages 5000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _pkg(folder: Path, name: str, version: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "package.json").write_text(json.dumps(
        {"name": name, "version": version, "dependencies": {"left-pad": "^1.3.0"}}))
    fixture = folder / "test" / "fixtures" / "app"
    fixture.mkdir(parents=True)
    (fixture / "package.json").write_text(json.dumps({"name": "fixture", "version": "0.0.0"}))


def _name(i: int) -> str:
    return f"@s{i % 7}/p{i}" if i % 10 == 0 else f"p{i}"


def make_npm(root: Path, count: int) -> int:
    modules = root / "node_modules"
    made = 0
    for i in range(count):
        _pkg(modules / _name(i), _name(i), "1.0.0")
        made += 1
        if i % 10 == 5:
            for j in range(3):
                _pkg(modules / _name(i) / "node_modules" / f"n{j}", f"n{j}", f"2.{i}.0")
                made += 1
    return made


def make_pnpm(root: Path, count: int) -> int:
    modules = root / "node_modules"
    for i in range(count):
        name = _name(i)
        real = modules / ".pnpm" / f"{name.replace('/', '+')}@1.0.0" / "node_modules" / name
        _pkg(real, name, "1.0.0")
        link = modules / name
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(real, link.parent), link)
    return count


CHILD = """
import resource, sys, time
from pathlib import Path
from chainwatch.inventory.walk import walk
from chainwatch.model import Environment
t = time.perf_counter()
envs = [e for e in walk([Path(sys.argv[1])]) if isinstance(e, Environment)]
print(sum(len(e.packages) for e in envs), len(envs), time.perf_counter() - t,
      resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def measure(modules: Path) -> tuple[int, int, float, float]:
    done = subprocess.run([sys.executable, "-c", CHILD, str(modules)], capture_output=True,
                          text=True, check=True, cwd=ROOT)
    packages, envs, seconds, rss = done.stdout.split()
    return int(packages), int(envs), float(seconds), float(rss)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packages", type=int, default=5000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for layout, make in (("npm", make_npm), ("pnpm", make_pnpm)):
            root = Path(tmp) / layout
            expected = make(root, args.packages)
            packages, envs, seconds, rss = measure(root / "node_modules")
            status = "ok" if (packages, envs) == (expected, 1) else "WRONG"
            print(f"{layout:5} node_modules, {expected} package roots: {packages} packages in "
                  f"{envs} environment(s), {seconds:.2f} s, {rss:.0f} MB max RSS [{status}]")


if __name__ == "__main__":
    main()
