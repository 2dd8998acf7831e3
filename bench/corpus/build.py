#!/usr/bin/env python3
"""Build the replica corpus: each incident spec injected into real benign packages.

For every spec in tests/fixtures/replicas and every host it names (a real package version,
downloaded once from the registry and cached by integrity), write the attacker's version as a
tarball with a label, and a second, obfuscated variant where the spec says the attacker
obfuscated (javascript-obfuscator, installed into the cache with --ignore-scripts and run on our
own inert source only). Specs without hosts use a small synthetic host. Nothing is ever run.

    python bench/corpus/build.py            # → bench/.cache/corpus/<id>/{target.tgz,label.json}
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.corpus.replica import Spec, inject, obfuscated, specs
from chainwatch.errors import ChainwatchError
from chainwatch.registry import RegistryClient
from chainwatch.scan import Scanner

CACHE = Path(__file__).resolve().parents[1] / ".cache"
CORPUS = CACHE / "corpus"
OBFUSCATOR = "javascript-obfuscator@4.1.1"
OBFUSCATOR_OPTIONS = ["--compact", "true", "--string-array", "true", "--string-array-rotate",
                      "true", "--string-array-encoding", "base64", "--string-array-threshold",
                      "1", "--identifier-names-generator", "hexadecimal", "--seed", "7"]
SYNTHETIC_HOST = {
    "package.json": json.dumps({"name": "left-padder", "version": "1.0.0", "main": "index.js",
                                "description": "pad strings"}, indent=2).encode(),
    "index.js": b"'use strict';\nmodule.exports = function leftPad(s, n, c) {\n"
                b"  s = String(s); c = c === undefined ? ' ' : String(c);\n"
                b"  while (s.length < n) s = c + s;\n  return s;\n};\n",
}


def tgz(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for path in sorted(files):
            info = tarfile.TarInfo("package/" + path)
            info.size = len(files[path])
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(files[path]))
    return buf.getvalue()


def obfuscator_cli() -> Path | None:
    prefix = CACHE / "tools"
    cli = prefix / "node_modules" / "javascript-obfuscator" / "bin" / "javascript-obfuscator"
    if cli.exists():
        return cli
    npm = shutil.which("npm")
    if npm is None:
        return None
    prefix.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([npm, "install", "--prefix", str(prefix), "--ignore-scripts",
                           "--no-audit", "--no-fund", OBFUSCATOR],
                          capture_output=True, text=True, timeout=600, check=False)
    return cli if done.returncode == 0 and cli.exists() else None


def make_obfuscate(cli: Path) -> object:
    def run(part: str, code: str) -> str:
        key = hashlib.sha256((OBFUSCATOR + json.dumps(OBFUSCATOR_OPTIONS) + code).encode())
        out = CACHE / "obfuscated" / f"{key.hexdigest()}.js"
        if not out.exists():
            out.parent.mkdir(parents=True, exist_ok=True)
            src = out.with_suffix(".src.js")
            src.write_text(code)
            subprocess.run([shutil.which("node") or "node", str(cli), str(src), "--output",
                            str(out), *OBFUSCATOR_OPTIONS], check=True, capture_output=True,
                           timeout=300)
        return out.read_text()
    return run


def host_files(scanner: Scanner, spec_host: str) -> dict[str, bytes]:
    loaded = scanner.load(spec_host)
    return {f.path: f.data for f in loaded.files.files}


def write(item_id: str, spec: Spec, host: str, variant: str, files: dict[str, bytes],
          base: dict[str, bytes]) -> None:
    folder = CORPUS / item_id
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "target.tgz").write_bytes(tgz(files))
    (folder / "base.tgz").write_bytes(tgz(base))
    (folder / "label.json").write_text(json.dumps({
        "id": item_id, "spec": spec.name, "incident": spec.incident,
        "reference": spec.reference, "techniques": list(spec.techniques),
        "expect": spec.expect, "top_technique": list(spec.top_technique),
        "host": host, "variant": variant, "new_package": spec.new_package}, indent=2))


def build(offline: bool = False, obfuscate: bool = True) -> int:
    scanner = Scanner(RegistryClient(offline=offline), workers=1)
    cli = obfuscator_cli() if obfuscate else None
    transform = make_obfuscate(cli) if cli else None
    count = 0
    for spec in specs():
        for host in spec.hosts or ("synthetic",):
            try:
                base = SYNTHETIC_HOST if host == "synthetic" else host_files(scanner, host)
            except ChainwatchError as exc:
                print(f"skip {spec.name} on {host}: {exc}", file=sys.stderr)
                continue
            name = (host.rsplit("@", 1)[0] if "@" in host[1:] else host).replace("/", "__")
            write(f"{spec.name}--{name}", spec, host, "plain", inject(base, spec), base)
            count += 1
            hand = obfuscated(spec)
            if hand is not None:
                write(f"{spec.name}--{name}--hand-obfuscated", spec, host, "hand-obfuscated",
                      inject(base, hand), base)
                count += 1
            if spec.obfuscate and transform is not None:
                write(f"{spec.name}--{name}--obfuscated", spec, host, "obfuscated",
                      inject(base, spec, transform), base)  # type: ignore[arg-type]
                count += 1
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--offline", action="store_true", help="only cached host packages")
    parser.add_argument("--no-obfuscation", action="store_true")
    args = parser.parse_args()
    n = build(args.offline, not args.no_obfuscation)
    print(f"{n} replica packages in {CORPUS}")


if __name__ == "__main__":
    main()
