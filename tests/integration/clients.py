"""The package managers teams use, as real clients for integration tests.

Each is a trusted tool taken from the npm registry once into the test cache (scripts ignored)
and run from there: pnpm, yarn classic (`yarn@1`), yarn berry (`@yarnpkg/cli-dist@4`, a single
JavaScript file run by node) and bun (`@oven/bun-linux-x64`, the bun binary itself). A missing
node/npm is a missing part; a registry that cannot be reached skips.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import missing_part
from tests.integration.conftest import FIXTURE_CACHE

#: tool -> (npm package spec, the file inside node_modules that is the client)
TOOLS: dict[str, tuple[str, str]] = {
    "pnpm": ("pnpm@9", "pnpm/bin/pnpm.cjs"),
    "yarn1": ("yarn@1", "yarn/bin/yarn.js"),
    "yarn4": ("@yarnpkg/cli-dist@4", "@yarnpkg/cli-dist/bin/yarn.js"),
    "bun": ("@oven/bun-linux-x64@1", "@oven/bun-linux-x64/bin/bun"),
}


def tool(name: str) -> list[str]:
    """The command that runs ``name``, installing it into the test cache the first time."""
    if shutil.which("npm") is None or shutil.which("node") is None:
        missing_part("npm/node not installed")
    spec, member = TOOLS[name]
    if name == "bun" and (platform.system(), platform.machine()) != ("Linux", "x86_64"):
        pytest.skip("the bun test binary is taken for linux-x64 only")
    folder = FIXTURE_CACHE / "clients" / name
    entry = folder / "node_modules" / member
    if not entry.exists():
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "package.json").write_text(json.dumps({"name": f"cw-{name}", "private": True}))
        done = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--ignore-scripts",
                               "--no-save", spec], cwd=folder, capture_output=True, text=True,
                              timeout=600, check=False)
        if done.returncode != 0 or not entry.exists():
            pytest.skip(f"could not install {spec} (registry unreachable?): {done.stderr[-300:]}")
    if name == "bun":
        entry.chmod(0o755)
        return [str(entry)]
    return [shutil.which("node") or "node", str(entry)]


def run(command: list[str], cwd: Path, env: dict[str, str] | None = None,
        ) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("npm_", "NPM_", "YARN_",
                                                                      "BUN_"))}
    return subprocess.run(command, cwd=cwd, env={**base, **(env or {})}, capture_output=True,
                          text=True, timeout=300, check=False)


def installed_version(folder: Path, name: str) -> str | None:
    manifest = folder / "node_modules" / name / "package.json"
    if not manifest.exists():
        return None
    return str(json.loads(manifest.read_text())["version"])
