"""The proxy in front of a real registry (Verdaccio on loopback), used by the real npm client.

Verdaccio 6.8.0 (node-fetch overridden to 2.7.0 for Node 20) is installed once into the test
cache, started with no uplinks on a free loopback port, and populated by the tests with inert
packages published by the real npm client. Skipped when npm or the npm registry is unavailable.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import BENIGN_INDEX, clipper_source
from tests.integration.conftest import FIXTURE_CACHE

VERDACCIO = FIXTURE_CACHE / "verdaccio-6.8.0"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(url: str) -> None:
    for _ in range(150):
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def _npm(args: list[str], cwd: Path, home: Path,
         cache: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NPM_CONFIG_USERCONFIG": str(home / ".npmrc"),
           "npm_config_cache": str(cache or home / "npm-cache"),
           "npm_config_update_notifier": "false"}
    return subprocess.run([shutil.which("npm") or "npm", *args, "--no-audit", "--no-fund",
                           "--ignore-scripts"], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300, check=False)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    if shutil.which("npm") is None or shutil.which("node") is None:
        pytest.skip("npm/node not installed")
    if not (VERDACCIO / "node_modules" / ".bin" / "verdaccio").exists():
        VERDACCIO.mkdir(parents=True, exist_ok=True)
        (VERDACCIO / "package.json").write_text(json.dumps({
            "name": "cw-verdaccio", "private": True, "dependencies": {"verdaccio": "6.8.0"},
            "overrides": {"node-fetch": "2.7.0"}}))
        done = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--ignore-scripts"],
                              cwd=VERDACCIO, capture_output=True, text=True, timeout=600,
                              check=False)
        if done.returncode != 0:
            pytest.skip(f"could not install Verdaccio: {done.stderr[-300:]}")
    root = tmp_path_factory.mktemp("registry")
    (root / "config.yaml").write_text(
        "storage: ./storage\nauth:\n  htpasswd:\n    file: ./htpasswd\n    max_users: 10\n"
        "uplinks: {}\npackages:\n  '**':\n    access: $all\n    publish: $authenticated\n"
        "log: { type: stdout, format: pretty, level: error }\n")
    port = _port()
    registry = f"http://127.0.0.1:{port}/"
    verdaccio = subprocess.Popen(
        ["node", str(VERDACCIO / "node_modules" / ".bin" / "verdaccio"), "--config",
         str(root / "config.yaml"), "--listen", f"127.0.0.1:{port}"], cwd=root,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs = [verdaccio]
    try:
        _wait(registry + "-/ping")
        token = httpx.put(registry + "-/user/org.couchdb.user:tester",
                          json={"name": "tester", "password": "tester-pass-123"}).json()["token"]
        home = root / "home"
        home.mkdir()
        (home / ".npmrc").write_text(f"//127.0.0.1:{port}/:_authToken={token}\n")
        for version in ("1.0.0", "1.1.0"):
            pkg = root / f"pkg-{version}"
            pkg.mkdir()
            (pkg / "package.json").write_text(json.dumps(
                {"name": "left-padder", "version": version, "main": "index.js"}))
            (pkg / "index.js").write_text("module.exports = (s) => String(s);\n")
            done = _npm(["publish", "--registry", registry], pkg, home)
            assert done.returncode == 0, done.stderr
        # an inert replica of the September 2025 clipper appended to a patch release
        for version, code in (("1.0.0", BENIGN_INDEX), ("1.0.1", BENIGN_INDEX + clipper_source())):
            pkg = root / f"tint-{version}"
            pkg.mkdir()
            (pkg / "package.json").write_text(json.dumps(
                {"name": "color-tint", "version": version, "main": "index.js"}))
            (pkg / "index.js").write_text(code)
            done = _npm(["publish", "--registry", registry], pkg, home)
            assert done.returncode == 0, done.stderr
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
        pytest.skip("npx not installed")
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
