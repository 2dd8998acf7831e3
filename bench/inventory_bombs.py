#!/usr/bin/env python3
"""Inventory against hostile inputs: time and peak memory, each in a fresh process.

* an image whose one layer holds a large file (docker save layout): layers are streamed, so
  peak memory stays flat whatever the layer size;
* the billion laughs as a pnpm-lock.yaml (nine aliases per level): refused while composing.

    python bench/inventory_bombs.py [--layer-mb 512]
"""

from __future__ import annotations

import argparse
import io
import json
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


def laughs(levels: int) -> str:
    lines = ["lockfileVersion: '9.0'", "a: &a [" + ",".join(["'x'"] * 9) + "]"]
    prev = "a"
    for i in range(1, levels):
        name = chr(ord("a") + i)
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
        prev = name
    return "\n".join(lines) + f"\nimporters:\n  .:\n    dependencies:\n      x: *{prev}\n"


CHILD = """
import resource, sys, time
from pathlib import Path
from chainwatch.inventory.walk import walk
start = time.perf_counter()
found = list(walk([Path(sys.argv[1])]))
print(f"{time.perf_counter() - start:.2f}",
      resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
      "|".join(type(f).__name__ + ":" + getattr(f, "message", "") for f in found)[:120])
"""


def measure(path: Path) -> str:
    out = subprocess.run([sys.executable, "-c", CHILD, str(path)], capture_output=True,
                         text=True, check=True, cwd=ROOT).stdout.split(maxsplit=2)
    return f"{out[0]} s, {out[1]} MB max RSS  ({out[2].strip() if len(out) > 2 else ''})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--layer-mb", type=int, default=512)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        start = time.perf_counter()
        image = make_image(folder, args.layer_mb * 1024 * 1024)
        print(f"image with a {args.layer_mb} MB layer (built in {time.perf_counter() - start:.1f} s): "
              f"{measure(image)}")
        image.unlink()
        bomb = folder / "bomb" / "pnpm-lock.yaml"
        bomb.parent.mkdir()
        bomb.write_text(laughs(8))
        print(f"pnpm-lock.yaml alias bomb ({bomb.stat().st_size} bytes, 9**8 leaves): "
              f"{measure(bomb.parent)}")


if __name__ == "__main__":
    main()
