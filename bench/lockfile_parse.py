#!/usr/bin/env python3
"""Lockfile parse speed: chainwatch's parsers against npm's own reader, in the same run.

For the real lockfiles of ../shared/corpus/lockfiles, times chainwatch's parser (median of
several runs, in-process); for the npm/cli package-lock it also times @npmcli/arborist's
``loadVirtual`` (npm's own lockfile reader, installed into bench/.cache/tools with
--ignore-scripts) the same way, inside one node process.

    python bench/lockfile_parse.py
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from chainwatch.inventory.walk import walk  # noqa: E402
from chainwatch.model import Environment  # noqa: E402

LOCKFILES = Path(os.environ.get("CHAINWATCH_SHARED") or ROOT.parent / "shared") / "corpus" / "lockfiles"
TOOLS = ROOT / "bench" / ".cache" / "tools"
TARGET = {"npm-cli.package-lock.json": "package-lock.json", "vite.pnpm-lock.yaml": "pnpm-lock.yaml",
          "babel.yarn-berry.lock": "yarn.lock", "excalidraw.yarn-classic.lock": "yarn.lock",
          "hono.bun.lock": "bun.lock", "elysia.bun.lock": "bun.lock"}
ARBORIST_JS = """
const Arborist = require(process.argv[2]);
(async () => {
  const times = [];
  let count = 0;
  for (let i = 0; i < 7; i++) {
    const t0 = performance.now();
    const tree = await new Arborist({ path: process.argv[1] }).loadVirtual();
    times.push(performance.now() - t0);
    count = tree.inventory.size;
  }
  times.sort((a, b) => a - b);
  console.log(JSON.stringify({ median_ms: times[3], nodes: count }));
})();
"""


def arborist(folder: Path) -> dict[str, float] | None:
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        return None
    module = TOOLS / "node_modules" / "@npmcli" / "arborist"
    if not module.exists():
        TOOLS.mkdir(parents=True, exist_ok=True)
        subprocess.run([npm, "install", "--prefix", str(TOOLS), "--ignore-scripts", "--no-audit",
                        "--no-fund", "@npmcli/arborist@9"], capture_output=True, check=False,
                       timeout=600)
    if not module.exists():
        return None
    done = subprocess.run([node, "-e", ARBORIST_JS, str(folder), str(module)],
                          capture_output=True, text=True, check=False, timeout=600)
    try:
        return dict(json.loads(done.stdout))
    except ValueError:
        print(done.stderr[-500:], file=sys.stderr)
        return None


def main() -> None:
    if not LOCKFILES.is_dir():
        sys.exit(f"{LOCKFILES} not found")
    for name, target in TARGET.items():
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            (folder / target).write_bytes((LOCKFILES / name).read_bytes())
            times, env = [], None
            for _ in range(7):
                t0 = time.perf_counter()
                env = next(e for e in walk([folder / target]) if isinstance(e, Environment))
                times.append((time.perf_counter() - t0) * 1000)
            assert env is not None
            line = (f"{name:32} {(LOCKFILES / name).stat().st_size / 1024:6.0f} KB  chainwatch "
                    f"{statistics.median(times):7.1f} ms ({len(env.packages)} packages)")
            if name == "npm-cli.package-lock.json":
                root = json.loads((folder / target).read_text())["packages"][""]
                (folder / "package.json").write_text(json.dumps(root))
                peer = arborist(folder)
                if peer:
                    line += (f"   arborist loadVirtual {peer['median_ms']:7.1f} ms "
                             f"({int(peer['nodes'])} nodes): "
                             f"{peer['median_ms'] / statistics.median(times):.1f}x")
            print(line)


if __name__ == "__main__":
    main()
