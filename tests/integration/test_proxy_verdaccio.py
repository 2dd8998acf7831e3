"""The proxy in front of a real registry (Verdaccio on loopback), used by the real npm client.

Verdaccio 6.8.0 (node-fetch overridden to 2.7.0 for Node 20) is installed once into the test
cache, started with no uplinks on a free loopback port, and populated by the tests with inert
packages published by the real npm client. Skipped when npm or the npm registry is unavailable.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from tests.helpers import BENIGN_INDEX, clipper_source, make_tgz, manifest, missing_part
from tests.integration.clients import installed_version, run, tool
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
        server.publish("@private/inner", "1.0.0", {"index.js": "module.exports = 2;\n"})
        osv = root / "MAL-2099-7.json"
        osv.write_text(json.dumps({"id": "MAL-2099-7", "summary": "inert test record",
                                   "affected": [{"package": {"ecosystem": "npm",
                                                             "name": "left-padder"},
                                                 "versions": ["1.1.0"]}]}))
        db = f"sqlite:///{root / 'kb.db'}"
        # the operator's read token for the upstream (the proxy's own .npmrc): its scans fetch
        # private tarballs with it, as the README says
        env = {**os.environ, "CHAINWATCH_DATA_DIR": str(root), "CHAINWATCH_CACHE_DIR": str(root),
               "NPM_CONFIG_USERCONFIG": str(home / ".npmrc")}
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
        yield {"registry": registry, "home": home, "root": root, "token": server.token, **proxies}
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


# --- every client teams use: yarn classic, yarn berry and bun, each with its own registry setting

def _client_project(world: dict[str, object], name: str, client: str, registry: str) -> Path:
    """A project whose registry setting (the one the README documents) names ``registry``."""
    folder = _project(world, name)
    if client == "yarn1":
        (folder / ".yarnrc").write_text(f'registry "{registry}"\n')
    elif client == "yarn4":
        (folder / "yarn.lock").touch()  # the project root, not a parent's workspace
        (folder / ".yarnrc.yml").write_text(
            f'npmRegistryServer: "{registry}"\n'
            'unsafeHttpWhitelist: ["127.0.0.1"]\n'
            "nodeLinker: node-modules\nenableGlobalCache: false\nenableTelemetry: false\n"
            "enableImmutableInstalls: false\n"
            "npmMinimalAgeGate: 0\n")  # yarn >= 4.10's own cooldown (1d): the test publishes now
    else:
        (folder / "bunfig.toml").write_text(f'[install]\nregistry = "{registry}"\n')
    return folder


def _client(world: dict[str, object], client: str, folder: Path, args: list[str],
            extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    cache = folder / f".{client}-cache"
    home = Path(str(world["root"])) / f"home-{client}"  # no user configuration
    home.mkdir(exist_ok=True)
    env = {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}
    if client == "yarn1":
        command = [*tool("yarn1"), *args, "--non-interactive", "--ignore-scripts",
                   "--cache-folder", str(cache)]
    elif client == "yarn4":
        command = [*tool("yarn4"), *args]
        # the global folder holds yarn's mirror of every tarball: one per project, like a cache
        env |= {"YARN_CACHE_FOLDER": str(cache), "YARN_GLOBAL_FOLDER": str(cache / "global"),
                "YARN_ENABLE_SCRIPTS": "false"}
    else:
        command = [*tool("bun"), *args]
        env |= {"BUN_INSTALL_CACHE_DIR": str(cache), "BUN_INSTALL": str(home / ".bun")}
    return run(command, folder, env | (extra_env or {}))


CLIENTS = ["yarn1", "yarn4", "bun"]


def _with_token(client: str, folder: Path, proxy: str) -> None:
    """The token setting the README documents for ``client``, read from $NPM_TOKEN."""
    host = proxy.removeprefix("http:")
    if client in ("npm", "pnpm", "yarn1"):
        with (folder / ".npmrc").open("a") as rc:
            rc.write(f"registry={proxy}\n{host}:_authToken=${{NPM_TOKEN}}\n")
    elif client == "yarn4":
        with (folder / ".yarnrc.yml").open("a") as rc:
            rc.write('npmAuthToken: "${NPM_TOKEN}"\nnpmAlwaysAuth: true\n')
    else:
        (folder / "bunfig.toml").write_text(
            f'[install]\nregistry = {{ url = "{proxy}", token = "$NPM_TOKEN" }}\n')


@pytest.mark.parametrize("client", ["npm", "pnpm", *CLIENTS])
def test_each_client_passes_its_token_through_the_proxy(world: dict[str, object],
                                                        client: str) -> None:
    proxy = str(world["policy"])
    folder = _client_project(world, f"{client}-token", client, proxy)
    _with_token(client, folder, proxy)
    if client == "npm":
        command = [shutil.which("npm") or "npm", "install", "--no-audit", "--no-fund",
                   "--ignore-scripts", "--cache", str(folder / ".npm-cache"), "@private/inner"]
    elif client == "pnpm":
        command = [*tool("pnpm"), "add", "@private/inner", "--ignore-scripts",
                   "--store-dir", str(folder / ".pnpm-store")]
    else:
        command = []
    env = {"NPM_TOKEN": str(world["token"])}
    if command:
        home = Path(str(world["root"])) / f"home-{client}"
        home.mkdir(exist_ok=True)
        done = run(command, folder, {**env, "HOME": str(home),
                                     "npm_config_cache": str(home / "npm-cache")})
    else:
        done = _client(world, client, folder, ["add", "@private/inner"], env)
    assert done.returncode == 0, done.stdout[-800:] + done.stderr[-800:]
    assert installed_version(folder, "@private/inner") == "1.0.0"


def test_without_a_token_the_private_scope_stays_closed(world: dict[str, object]) -> None:
    folder = _client_project(world, "bun-no-token", "bun", str(world["policy"]))
    done = _client(world, "bun", folder, ["add", "@private/inner"])
    assert done.returncode != 0
    assert installed_version(folder, "@private/inner") is None


@pytest.mark.parametrize("client", CLIENTS)
def test_each_client_installs_the_newest_allowed_version_through_the_proxy(
        world: dict[str, object], client: str) -> None:
    folder = _client_project(world, f"{client}-newest", client, str(world["policy"]))
    done = _client(world, client, folder, ["add", "left-padder"])
    assert done.returncode == 0, done.stdout[-800:] + done.stderr[-800:]
    assert installed_version(folder, "left-padder") == "1.0.0"  # 1.1.0 is known-bad


@pytest.mark.parametrize("client", CLIENTS)
def test_each_client_is_refused_a_blocked_version(world: dict[str, object], client: str) -> None:
    folder = _client_project(world, f"{client}-blocked", client, str(world["policy"]))
    done = _client(world, client, folder, ["add", "left-padder@1.1.0"])
    assert done.returncode != 0
    assert installed_version(folder, "left-padder") is None


@pytest.mark.parametrize("client", CLIENTS)
def test_each_client_with_a_pinned_blocked_version_gets_the_proxy_refusal(
        world: dict[str, object], client: str) -> None:
    upstream, proxy = str(world["registry"]), str(world["policy"])
    folder = _client_project(world, f"{client}-pinned", client, upstream)
    made = _client(world, client, folder, ["add", "left-padder@1.1.0"])
    assert made.returncode == 0, made.stdout[-800:] + made.stderr[-800:]
    assert installed_version(folder, "left-padder") == "1.1.0"
    # a fresh runner: the lockfile pins 1.1.0 (resolved through the proxy, had it been made
    # there before the version was flagged), no package-manager cache, no node_modules
    shutil.rmtree(folder / "node_modules")
    shutil.rmtree(folder / f".{client}-cache", ignore_errors=True)
    for path in folder.iterdir():
        if path.is_file():
            path.write_text(path.read_text().replace(upstream, proxy))
    before = _refusals(proxy)
    done = _client(world, client, folder, ["install"])
    assert done.returncode != 0, done.stdout[-800:]
    assert installed_version(folder, "left-padder") is None
    # the client asked for the pinned tarball and the proxy refused it, naming the rule
    assert [d["rule"] for d in _refusals(proxy)[len(before):]][:1] == ["known-bad"]


def _refusals(proxy: str) -> list[dict[str, str]]:
    return [d for d in httpx.get(proxy + "-/chainwatch/decisions").json()["decisions"]
            if (d["package"], d["version"], d["action"]) == ("left-padder", "1.1.0", "refused")]


def test_bun_installs_through_the_proxy_from_an_upstream_without_publish_times(
        tmp_path: Path) -> None:
    """Private registries and mirrors may send no ``time``: bun once refused the proxy's
    abbreviated document (``"modified": null``, PackageFailedToParse) and teams bypassed it."""
    bun = tool("bun")
    tarball = make_tgz({"package.json": manifest("timeless", "1.0.0"),
                        "index.js": "module.exports = 1;\n"})
    port = _port()
    upstream = f"http://127.0.0.1:{port}/"
    doc = {"name": "timeless", "dist-tags": {"latest": "1.0.0"}, "versions": {"1.0.0": {
        "name": "timeless", "version": "1.0.0",
        "dist": {"tarball": f"{upstream}timeless/-/timeless-1.0.0.tgz",
                 "integrity": "sha512-" + base64.b64encode(hashlib.sha512(tarball).digest())
                 .decode(), "shasum": hashlib.sha1(tarball).hexdigest()}}}}  # no "time"

    class Upstream(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = (json.dumps(doc).encode() if self.path == "/timeless"
                    else tarball if self.path.endswith(".tgz") else b"{}")
            self.send_response(200 if body != b"{}" else 404)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Upstream)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    pport = _port()
    env = {**os.environ, "CHAINWATCH_DATA_DIR": str(tmp_path), "CHAINWATCH_CACHE_DIR": str(tmp_path)}
    proxy = subprocess.Popen([sys.executable, "-m", "chainwatch", "proxy", "--upstream", upstream,
                              "--listen", f"127.0.0.1:{pport}", "--min-age", "0s", "--db",
                              f"sqlite:///{tmp_path / 'db.sqlite'}"], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait(f"http://127.0.0.1:{pport}/-/chainwatch/health")
        folder = tmp_path / "app"
        folder.mkdir()
        (folder / "package.json").write_text(json.dumps({"name": "app", "version": "1.0.0"}))
        done = run([*bun, "add", "timeless"], folder, {
            "HOME": str(tmp_path), "BUN_INSTALL_CACHE_DIR": str(tmp_path / "bun-cache"),
            "BUN_CONFIG_REGISTRY": f"http://127.0.0.1:{pport}/"})
        assert done.returncode == 0, done.stdout[-800:] + done.stderr[-800:]
        assert installed_version(folder, "timeless") == "1.0.0"
    finally:
        proxy.terminate()
        proxy.wait(timeout=10)
        server.shutdown()
