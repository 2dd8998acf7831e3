"""The clipper replica obfuscated with javascript-obfuscator, as attackers do, is still caught.

A cached build step installs the obfuscator from the npm registry (with --ignore-scripts) and runs
it on our own inert replica source; the output is only read by chainwatch, never run. The tests
skip cleanly when npm or the registry is not available.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from bench.corpus.replica import SPECS, appended_code, load

from chainwatch.model import Level, PackageRef
from chainwatch.scan import Loaded, Scanner, scan_snippet_files
from tests.helpers import BENIGN_INDEX, manifest, missing_part
from tests.integration.conftest import FIXTURE_CACHE

OBFUSCATOR = "javascript-obfuscator@4.1.1"
#: Presets after the tool's documented "low/medium/high obfuscation" examples.
PRESETS: dict[str, list[str]] = {
    "default": [],
    "string-array": ["--string-array", "true", "--string-array-rotate", "true",
                     "--string-array-shuffle", "true", "--string-array-threshold", "1",
                     "--string-array-encoding", "base64"],
    "heavy": ["--compact", "true", "--control-flow-flattening", "true",
              "--dead-code-injection", "true", "--string-array", "true",
              "--string-array-encoding", "rc4", "--string-array-threshold", "1",
              "--transform-object-keys", "true", "--split-strings", "true",
              "--self-defending", "true"],
}
SCANNER = Scanner(None, workers=1)


@pytest.fixture(scope="session")
def obfuscator() -> Path:
    npm, node = shutil.which("npm"), shutil.which("node")
    if not npm or not node:
        missing_part("npm/node not installed")
    prefix = FIXTURE_CACHE / "obfuscator"
    cli = prefix / "node_modules" / "javascript-obfuscator" / "bin" / "javascript-obfuscator"
    if not cli.exists():
        prefix.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            [npm, "install", "--prefix", str(prefix), "--ignore-scripts", "--no-audit", "--no-fund",
             OBFUSCATOR], capture_output=True, text=True, timeout=300, check=False)
        if done.returncode != 0 or not cli.exists():
            pytest.skip(f"could not install {OBFUSCATOR}: {done.stderr[-300:]}")
    return cli


def obfuscate(cli: Path, source: str, preset: str) -> str:
    key = hashlib.sha256(json.dumps([OBFUSCATOR, source, PRESETS[preset]]).encode()).hexdigest()
    out = FIXTURE_CACHE / "obfuscated" / f"{key}.js"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        src = out.with_suffix(".src.js")
        src.write_text(source)
        subprocess.run([shutil.which("node") or "node", str(cli), str(src), "--output", str(out),
                        "--seed", "7", *PRESETS[preset]], check=True, capture_output=True,
                       timeout=300)
    return out.read_text()


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_obfuscated_clipper_appended_to_a_patch_release(obfuscator: Path, preset: str) -> None:
    payload = obfuscate(obfuscator, appended_code(load(SPECS / "qix.yml")), preset)
    base = Loaded(PackageRef("left-padder", "1.0.0"), scan_snippet_files(
        {"package.json": manifest(version="1.0.0"), "index.js": BENIGN_INDEX}))
    target = Loaded(PackageRef("left-padder", "1.0.1"), scan_snippet_files(
        {"package.json": manifest(version="1.0.1"), "index.js": BENIGN_INDEX + "\n" + payload}))
    verdict = SCANNER.analyze(target, base)
    assert verdict.level is Level.MALICIOUS, (verdict.explanation,
                                              [f.rule for f in verdict.findings[:8]])
    assert any(f.technique == "obfuscation" for f in verdict.findings)
