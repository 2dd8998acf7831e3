"""The proxy in front of a real registry (Verdaccio on loopback), used by the real npm client.

Verdaccio 6.8.0 (node-fetch overridden to 2.7.0 for Node 20) is installed once into the test
cache, started with no uplinks on a free loopback port, and populated by the tests with inert
packages published by the real npm client. Skipped when npm or the npm registry is unavailable.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import BENIGN_INDEX, clipper_source, missing_part
from tests.integration.verdaccio import free_port as _port
from tests.integration.verdaccio import npm as _npm
from tests.integration.verdaccio import start_verdaccio
from tests.integration.verdaccio import wait_up as _wait


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    root = tmp_path_factory.mktemp("registry")
    server = start_verdaccio(root)
    registry, home = server.registry, server.home
    procs: list[subprocess.Popen[bytes]] = [server.process]
    try:
        for version in ("1.0.0", "1.1.0"):
            server.publish("left-padder", version,
                           {"index.js": "module.exports = (s) => String(s);\n"})
        # an inert replica of the September 2025 clipper appended to a patch release
        for version, code in (("1.0.0", BENIGN_INDEX), ("1.0.1", BENIGN_INDEX + clipper_source())):
            server.publish("color-tint", version, {"index.js": code})
        osv = root / "MAL-2099-7.json"
        osv.write_text(json.dumps({"id": "MAL-2099-7", "summary": "inert test record",
                                   "affected": [{"package": {"ecosystem": "npm",
                                                             "name": "left-padder"},
                                                 "versions": ["1.1.0"]}]}))
        db = f"sqlite:///{root / 'kb.db'}"
        env = {**os.environ, "CHAINWATCH_DATA_DIR": str(root), "CHAINWATCH_CACHE_DIR": str(root)}
        subprocess.run([sys.executable, "-m", "chainwatch", "db", "import", str(osv), "--db", db],
                       env=env, check=True, capture_output=True)
        proxies = {}
        for label, min_age in (("policy", "0s"), ("cooldown", "1h")):
            pport = _port()
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "chainwatch", "proxy", "--upstream", registry,
                 "--listen", f"127.0.0.1:{pport}", "--min-age", min_age, "--db", db], env=env,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            proxies[label] = f"http://127.0.0.1:{pport}/"
            _wait(proxies[label] + "-/chainwatch/health")
        yield {"registry": registry, "home": home, "root": root, **proxies}
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=10)


def _project(world: dict[str, object], name: str) -> Path:
    folder = Path(str(world["root"])) / name
    folder.mkdir()
    (folder / "package.json").write_text(json.dumps({"name": name, "version": "1.0.0"}))
    return folder


def test_npm_install_resolves_to_the_newest_allowed_version(world: dict[str, object]) -> None:
    folder = _project(world, "app1")
    done = _npm(["install", "left-padder", "--registry", str(world["policy"])], folder,
                Path(str(world["home"])))
    assert done.returncode == 0, done.stderr
    installed = json.loads((folder / "node_modules" / "left-padder" / "package.json").read_text())
    assert installed["version"] == "1.0.0"  # 1.1.0 is known-bad, never installed


def test_a_blocked_version_is_never_installed(world: dict[str, object]) -> None:
    folder = _project(world, "app2")
    done = _npm(["install", "left-padder@1.1.0", "--registry", str(world["policy"])], folder,
                Path(str(world["home"])))
    assert done.returncode != 0
    assert not (folder / "node_modules" / "left-padder").exists()


def test_npm_ci_with_a_pinned_blocked_version_fails_naming_the_rule(
        world: dict[str, object]) -> None:
    folder = _project(world, "app3")
    home = Path(str(world["home"]))
    # a lockfile made before the version was flagged, with resolved tarball URLs; npm is told
    # to fetch them through the configured registry (replace-registry-host), as behind a mirror
    made = _npm(["install", "left-padder@1.1.0", "--package-lock-only", "--registry",
                 str(world["registry"]), "--no-omit-lockfile-registry-resolved"], folder, home)
    assert made.returncode == 0, made.stderr
    lock = json.loads((folder / "package-lock.json").read_text())
    assert lock["packages"]["node_modules/left-padder"]["version"] == "1.1.0"
    # a fresh runner: npm would otherwise install the tarball from its own cache, which no
    # registry or proxy can see
    done = _npm(["ci", "--registry", str(world["policy"]), "--replace-registry-host=always"],
                folder, home, cache=folder / "fresh-npm-cache")
    assert done.returncode != 0
    assert "403" in done.stderr and "known-bad" in done.stderr


def test_a_release_the_scan_finds_malicious_is_refused_then_hidden(
        world: dict[str, object]) -> None:
    folder = _project(world, "app6")
    home = Path(str(world["home"]))
    cache = folder / "npm-cache"  # npm keeps what it published in its own cache
    done = _npm(["install", "color-tint@1.0.1", "--registry", str(world["policy"])], folder, home,
                cache)
    assert done.returncode != 0 and "scan-malicious" in done.stderr
    assert not (folder / "node_modules" / "color-tint").exists()
    # the verdict is remembered: the packument now hides 1.0.1 and npm takes 1.0.0
    done = _npm(["install", "color-tint", "--registry", str(world["policy"])], folder, home,
                cache)
    assert done.returncode == 0, done.stderr
    installed = json.loads((folder / "node_modules" / "color-tint" / "package.json").read_text())
    assert installed["version"] == "1.0.0"
    decisions = httpx.get(str(world["policy"]) + "-/chainwatch/decisions").json()["decisions"]
    assert {(d["version"], d["action"], d["rule"]) for d in decisions
            if d["package"] == "color-tint"} >= {("1.0.1", "refused", "scan-malicious"),
                                                 ("1.0.1", "hidden", "scan-malicious")}


def test_the_cooldown_hides_a_version_published_seconds_ago(world: dict[str, object]) -> None:
    folder = _project(world, "app4")
    done = _npm(["install", "left-padder", "--registry", str(world["cooldown"])], folder,
                Path(str(world["home"])))
    assert done.returncode != 0  # both versions were published moments ago
    decisions = httpx.get(str(world["cooldown"]) + "-/chainwatch/decisions").json()["decisions"]
    assert {d["rule"] for d in decisions if d["package"] == "left-padder"} >= {"min-age"}


def test_pnpm_installs_the_newest_allowed_version_through_the_proxy(
        world: dict[str, object]) -> None:
    if shutil.which("npx") is None:
        missing_part("npx not installed")
    folder = _project(world, "app5")
    home = Path(str(world["home"]))
    env = {**os.environ, "NPM_CONFIG_USERCONFIG": str(home / ".npmrc"),
           "npm_config_cache": str(home / "npm-cache")}
    done = subprocess.run(["npx", "--yes", "pnpm@9", "add", "left-padder", "--registry",
                           str(world["policy"]), "--ignore-scripts",
                           "--store-dir", str(folder / ".pnpm-store")],
                          cwd=folder, env=env, capture_output=True, text=True, timeout=300,
                          check=False)
    assert done.returncode == 0, done.stdout[-500:] + done.stderr[-500:]
    installed = json.loads((folder / "node_modules" / "left-padder" / "package.json").read_text())
    assert installed["version"] == "1.0.0"
