#!/usr/bin/env python3
"""Inventory against hostile inputs: time and peak memory, each in a fresh process.

* an image whose one layer holds a large file (docker save layout): layers are streamed, so
  peak memory stays flat whatever the layer size;
* the billion laughs as a pnpm-lock.yaml (nine aliases per level): refused while composing;
* a yarn.lock whose packages form one long chain (``--chain 20000``): dependency paths are
  found by BFS and cut in length and number, so time and memory stay linear in the lockfile.

    python bench/inventory_bombs.py [--layer-mb 512] [--chain 20000] [--only chain]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

LOCK = json.dumps({"name": "svc", "lockfileVersion": 3, "packages": {
    "": {"name": "svc", "dependencies": {"debug": "^4"}},
    "node_modules/debug": {"version": "4.4.2"}}}).encode()


class _Zeros(io.RawIOBase):
    def __init__(self, n: int) -> None:
        self.n = n

    def readable(self) -> bool:
        return True

    def readinto(self, b: memoryview) -> int:  # type: ignore[override]
        k = min(len(b), self.n)
        b[:k] = bytes(k)
        self.n -= k
        return k


def make_image(folder: Path, layer_bytes: int) -> Path:
    layer_path = folder / "layer.tar"
    with tarfile.open(layer_path, "w") as layer:
        info = tarfile.TarInfo("app/package-lock.json")
        info.size = len(LOCK)
        layer.addfile(info, io.BytesIO(LOCK))
        info = tarfile.TarInfo("app/big.bin")
        info.size = layer_bytes
        layer.addfile(info, _Zeros(layer_bytes))
    image = folder / "big.tar"
    with tarfile.open(image, "w") as tar:
        manifest = json.dumps([{"RepoTags": ["big:1"], "Layers": ["l1/layer.tar"]}]).encode()
        info = tarfile.TarInfo("manifest.json")
        info.size = len(manifest)
        tar.addfile(info, io.BytesIO(manifest))
        tar.add(layer_path, "l1/layer.tar")
    layer_path.unlink()
    return image


def chain_lock(folder: Path, length: int) -> Path:
    """package.json -> p0 -> p1 -> ... -> p{length-1}, as yarn classic writes it."""
    folder.mkdir()
    (folder / "package.json").write_text(json.dumps(
        {"name": "chain", "dependencies": {"p0": "^1.0.0"}}))
    blocks = ["# yarn lockfile v1\n"]
    for i in range(length):
        block = (f'p{i}@^1.0.0:\n  version "1.0.0"\n'
                 f'  resolved "https://registry.yarnpkg.com/p{i}/-/p{i}-1.0.0.tgz"\n')
        if i + 1 < length:
            block += f'  dependencies:\n    p{i + 1} "^1.0.0"\n'
        blocks.append(block)
    lock = folder / "yarn.lock"
    lock.write_text("\n".join(blocks))
    return lock


def laughs(levels: int) -> str:
    lines = ["lockfileVersion: '9.0'", "a: &a [" + ",".join(["'x'"] * 9) + "]"]
    prev = "a"
    for i in range(1, levels):
        name = chr(ord("a") + i)
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
        prev = name
    return "\n".join(lines) + f"\nimporters:\n  .:\n    dependencies:\n      x: *{prev}\n"


#: Address space a measured child may take: a regression fails the figure, not the machine.
LIMIT_MB = 4096
GUARD = f"import resource; resource.setrlimit(resource.RLIMIT_AS, ({LIMIT_MB} << 20,) * 2)\n"

CHILD = GUARD + """
import resource, sys, time
from pathlib import Path
from chainwatch.inventory.walk import walk
start = time.perf_counter()
found = list(walk([Path(sys.argv[1])]))
print(f"{time.perf_counter() - start:.2f}",
      resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
      "|".join(type(f).__name__ + ":" + getattr(f, "message", "") for f in found)[:120])
"""


CLI = GUARD + """
import contextlib, os, resource, sys, time
from chainwatch.cli import app
start = time.perf_counter()
with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
    try:
        app(sys.argv[1:], standalone_mode=False)
    except SystemExit:
        pass
print(f"{time.perf_counter() - start:.2f}", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""


def measure_cli(*args: str) -> str:
    """Time and peak memory of one whole command (parse, graph, render to JSON)."""
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "XDG_DATA_HOME": home, "XDG_CACHE_HOME": home}
        done = subprocess.run([sys.executable, "-c", CLI, *args], capture_output=True,
                              text=True, cwd=ROOT, env=env, timeout=600)
    out = done.stdout.split()
    if done.returncode or len(out) < 2:
        return f"failed (over {LIMIT_MB} MB of address space?): {done.stderr.strip()[-100:]}"
    return f"{out[-2]} s, {out[-1]} MB max RSS"


def measure(path: Path) -> str:
    done = subprocess.run([sys.executable, "-c", CHILD, str(path)], capture_output=True,
                          text=True, cwd=ROOT, timeout=600)
    out = done.stdout.split(maxsplit=2)
    if done.returncode or len(out) < 2:
        return f"failed (over {LIMIT_MB} MB of address space?): {done.stderr.strip()[-100:]}"
    return f"{out[0]} s, {out[1]} MB max RSS  ({out[2].strip() if len(out) > 2 else ''})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--layer-mb", type=int, default=512)
    parser.add_argument("--chain", type=int, default=20_000)
    parser.add_argument("--only", choices=["image", "laughs", "chain"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if args.only in (None, "chain"):
            lock = chain_lock(folder / "chain", args.chain)
            print(f"yarn.lock chain of {args.chain} packages ({lock.stat().st_size} bytes):")
            print(f"  parse and dependency paths: {measure(lock.parent)}")
            for command in ("inventory", "exposure"):
                print(f"  {command} --format json: "
                      f"{measure_cli(command, str(lock.parent), '--format', 'json')}")
        if args.only in (None, "image"):
            start = time.perf_counter()
            image = make_image(folder, args.layer_mb * 1024 * 1024)
            print(f"image with a {args.layer_mb} MB layer (built in "
                  f"{time.perf_counter() - start:.1f} s): {measure(image)}")
            image.unlink()
        if args.only in (None, "laughs"):
            bomb = folder / "bomb" / "pnpm-lock.yaml"
            bomb.parent.mkdir()
            bomb.write_text(laughs(8))
            print(f"pnpm-lock.yaml alias bomb ({bomb.stat().st_size} bytes, 9**8 leaves): "
                  f"{measure(bomb.parent)}")


if __name__ == "__main__":
    main()
