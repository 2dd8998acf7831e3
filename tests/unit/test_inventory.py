"""Inventory parsers on small hand-written lockfiles and on the real ones in ../shared."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chainwatch.exposure import expose
from chainwatch.intel import BuiltinKnownBad
from chainwatch.inventory import EXTRACTORS, InventoryError
from chainwatch.inventory.bun_lock import BunLockExtractor, strip_jsonc
from chainwatch.inventory.npm_lock import NpmLockExtractor
from chainwatch.inventory.pnpm_lock import PnpmLockExtractor
from chainwatch.inventory.walk import FileError, walk
from chainwatch.inventory.yarn_berry import YarnBerryExtractor
from chainwatch.model import Environment
from tests.helpers import SHARED

LOCKFILES = SHARED / "corpus" / "lockfiles"
NO_SIBLING = lambda name: None  # noqa: E731


def pkgs(env: Environment) -> dict[tuple[str, str], object]:
    return {(p.name, p.version): p for p in env.packages}


NPM_V3 = {
    "name": "app", "lockfileVersion": 3, "packages": {
        "": {"name": "app", "workspaces": ["packages/web"], "dependencies": {"a": "^1.0.0"},
             "devDependencies": {"t": "^1.0.0"}},
        "packages/web": {"name": "web", "version": "1.0.0", "dependencies": {"debug": "^4.4.0"}},
        "node_modules/web": {"resolved": "packages/web", "link": True},
        "node_modules/a": {"version": "1.0.0", "dependencies": {"b": "^2.0.0"}},
        "node_modules/b": {"version": "2.0.0"},
        "node_modules/a/node_modules/b": {"version": "1.5.0"},
        "node_modules/t": {"version": "1.0.0", "dev": True, "dependencies": {"b": "^2.0.0"}},
        "node_modules/debug": {"version": "4.4.2", "dependencies": {"ms": "^2.1.3"}},
        "node_modules/ms": {"version": "2.1.3"},
        "node_modules/alias": {"name": "chalk", "version": "5.6.1"},
    }}


def test_package_lock_v3_nesting_workspaces_dev_and_aliases() -> None:
    env = NpmLockExtractor().extract("package-lock.json", json.dumps(NPM_V3).encode(), NO_SIBLING)
    found = pkgs(env)
    assert ("b", "1.5.0") in found and ("b", "2.0.0") in found
    nested = found[("b", "1.5.0")]
    assert nested.paths == (("app", "a", "b"),) and not nested.dev  # type: ignore[attr-defined]
    assert found[("t", "1.0.0")].dev  # type: ignore[attr-defined]
    assert found[("b", "2.0.0")].dev  # type: ignore[attr-defined]  # only t (dev) uses it
    assert found[("ms", "2.1.3")].paths == (("web", "debug", "ms"),)  # type: ignore[attr-defined]
    assert ("chalk", "5.6.1") in found  # an alias is the real package
    hits = {(h.package.name, h.package.version) for h in expose(env, BuiltinKnownBad()).hits}
    assert hits == {("debug", "4.4.2"), ("chalk", "5.6.1")}


def test_package_lock_v1() -> None:
    doc = {"lockfileVersion": 1, "dependencies": {
        "a": {"version": "1.0.0", "requires": {"debug": "^4.0.0"},
              "dependencies": {"debug": {"version": "4.4.2"}}},
        "debug": {"version": "4.3.0", "dev": True},
        "x": {"version": "npm:ansi-styles@6.2.2"}}}
    found = pkgs(NpmLockExtractor().extract("package-lock.json", json.dumps(doc).encode(),
                                            NO_SIBLING))
    assert found[("debug", "4.4.2")].paths == (("(root)", "a", "debug"),)  # type: ignore[attr-defined]
    assert ("ansi-styles", "6.2.2") in found


YARN_V1 = '''# yarn lockfile v1


"a@^1.0.0":
  version "1.0.0"
  resolved "https://registry.yarnpkg.com/a/-/a-1.0.0.tgz#abc"
  integrity sha512-AAAA
  dependencies:
    debug "^4.4.0"

debug@^4.4.0:
  version "4.4.2"

"strip-ansi-cjs@npm:strip-ansi@^7.1.0":
  version "7.1.1"
'''


def test_yarn_classic_with_manifest_and_alias() -> None:
    manifest = json.dumps({"name": "app", "dependencies": {"a": "^1.0.0"},
                           "devDependencies": {"strip-ansi-cjs": "npm:strip-ansi@^7.1.0"}})
    env = YarnBerryExtractor().extract("yarn.lock", YARN_V1.encode(),
                                       lambda n: manifest.encode() if n == "package.json" else None)
    found = pkgs(env)
    assert found[("debug", "4.4.2")].paths == (("app", "a", "debug"),)  # type: ignore[attr-defined]
    assert found[("strip-ansi", "7.1.1")].dev  # type: ignore[attr-defined]


def test_yarn_classic_merge_conflict_is_a_clear_error() -> None:
    with pytest.raises(InventoryError, match="merge-conflict"):
        YarnBerryExtractor().extract("yarn.lock", (YARN_V1 + "<<<<<<< HEAD\n").encode(), NO_SIBLING)


YARN_BERRY = '''__metadata:
  version: 8
  cacheKey: 10

"app@workspace:.":
  version: 0.0.0-use.local
  resolution: "app@workspace:."
  dependencies:
    debug: "npm:^4.4.0"
    resolve: "patch:resolve@npm%3A^1.22.0#~builtin<compat/resolve>"
    web: "workspace:packages/web"
  languageName: unknown
  linkType: soft

"debug@npm:^4.4.0":
  version: 4.4.2
  resolution: "debug@npm:4.4.2"
  dependencies:
    ms: "npm:^2.1.3"
  checksum: 10/abc
  languageName: node
  linkType: hard

"ms@npm:^2.1.3":
  version: 2.1.3
  resolution: "ms@npm:2.1.3"
  languageName: node
  linkType: hard

"resolve@npm:^1.22.0":
  version: 1.22.8
  resolution: "resolve@npm:1.22.8"
  languageName: node
  linkType: hard

"resolve@patch:resolve@npm%3A^1.22.0#~builtin<compat/resolve>":
  version: 1.22.8
  resolution: "resolve@patch:resolve@npm%3A1.22.8#~builtin<compat/resolve>::version=1.22.8&hash=c3c19d"
  languageName: node
  linkType: hard

"web@workspace:packages/web":
  version: 0.0.0-use.local
  resolution: "web@workspace:packages/web"
  languageName: unknown
  linkType: soft
'''


def test_yarn_berry_skips_workspaces_and_patches_but_keeps_what_they_point_at() -> None:
    env = YarnBerryExtractor().extract("yarn.lock", YARN_BERRY.encode(), NO_SIBLING)
    found = pkgs(env)
    assert set(found) == {("debug", "4.4.2"), ("ms", "2.1.3"), ("resolve", "1.22.8")}
    assert found[("ms", "2.1.3")].paths == (("app", "debug", "ms"),)  # type: ignore[attr-defined]
    assert found[("resolve", "1.22.8")].paths == (("app", "resolve"),)  # type: ignore[attr-defined]


PNPM_V9 = '''lockfileVersion: '9.0'
importers:
  .:
    dependencies:
      a:
        specifier: ^1.0.0
        version: 1.0.0(b@2.0.0)
    devDependencies:
      debug:
        specifier: ^4.4.0
        version: 4.4.2
  packages/web:
    dependencies:
      web-dep:
        specifier: npm:chalk@5.6.1
        version: chalk@5.6.1
packages:
  a@1.0.0:
    resolution: {integrity: sha512-A}
  b@2.0.0:
    resolution: {integrity: sha512-B}
  debug@4.4.2:
    resolution: {integrity: sha512-D}
  chalk@5.6.1:
    resolution: {integrity: sha512-C}
snapshots:
  a@1.0.0(b@2.0.0):
    dependencies:
      b: 2.0.0
  b@2.0.0: {}
  debug@4.4.2: {}
  chalk@5.6.1: {}
'''


def test_pnpm_v9_peers_aliases_and_dev() -> None:
    env = PnpmLockExtractor().extract("pnpm-lock.yaml", PNPM_V9.encode(), NO_SIBLING)
    found = pkgs(env)
    assert found[("b", "2.0.0")].paths == ((".", "a", "b"),)  # type: ignore[attr-defined]
    assert found[("debug", "4.4.2")].dev and not found[("a", "1.0.0")].dev  # type: ignore[attr-defined]
    assert found[("chalk", "5.6.1")].paths == (("packages/web", "chalk"),)  # type: ignore[attr-defined]
    assert found[("a", "1.0.0")].integrity == "sha512-A"  # type: ignore[attr-defined]


def test_pnpm_v6_and_multi_document() -> None:
    v6 = '''lockfileVersion: '6.0'
dependencies:
  debug:
    specifier: ^4.4.0
    version: 4.4.2
packages:
  /debug@4.4.2:
    resolution: {integrity: sha512-D}
    dependencies:
      ms: 2.1.3
    dev: false
  /ms@2.1.3:
    resolution: {integrity: sha512-M}
    dev: false
'''
    env_doc = "---\nlockfileVersion: '9.0'\nimporters: {}\npackages: {}\n---\n"
    for text in (v6, env_doc + v6):
        found = pkgs(PnpmLockExtractor().extract("pnpm-lock.yaml", text.encode(), NO_SIBLING))
        assert found[("ms", "2.1.3")].paths == ((".", "debug", "ms"),)  # type: ignore[attr-defined]


BUN = '''{
  "lockfileVersion": 1,
  "workspaces": {
    "": { "name": "app", "dependencies": { "a": "^1.0.0", }, "devDependencies": { "debug": "^4", }, },
  },
  "packages": {
    // a comment bun does not write, tolerated
    "a": ["a@1.0.0", "", { "dependencies": { "b": "^1.0.0" } }, "sha512-A"],
    "a/b": ["b@1.5.0", "", {}, "sha512-B15"],
    "b": ["b@2.0.0", "", {}, "sha512-B2"],
    "debug": ["debug@4.4.2", "", {}, "sha512-D"],
  },
}
'''


def test_bun_lock_nested_keys_and_jsonc() -> None:
    assert json.loads(strip_jsonc('{"a": "x,}", "b": [1,2,],}')) == {"a": "x,}", "b": [1, 2]}
    found = pkgs(BunLockExtractor().extract("bun.lock", BUN.encode(), NO_SIBLING))
    assert found[("b", "1.5.0")].paths == (("app", "a", "b"),)  # type: ignore[attr-defined]
    assert found[("debug", "4.4.2")].dev  # type: ignore[attr-defined]
    assert ("b", "2.0.0") in found


def test_node_modules_tree_nested_pnpm_store_and_links_not_followed(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    (root / "node_modules" / "a" / "node_modules" / "debug").mkdir(parents=True)
    (root / "package.json").write_text(json.dumps({"name": "proj", "dependencies": {"a": "1"}}))
    (root / "node_modules" / "a" / "package.json").write_text(
        json.dumps({"name": "a", "version": "1.0.0", "dependencies": {"debug": "4"}}))
    (root / "node_modules" / "a" / "node_modules" / "debug" / "package.json").write_text(
        json.dumps({"name": "debug", "version": "4.4.2"}))
    store = root / "node_modules" / ".pnpm" / "chalk@5.6.1" / "node_modules" / "chalk"
    store.mkdir(parents=True)
    (store / "package.json").write_text(json.dumps({"name": "chalk", "version": "5.6.1"}))
    outside = tmp_path / "outside" / "evil"
    outside.mkdir(parents=True)
    (outside / "package.json").write_text(json.dumps({"name": "evil", "version": "6.6.6"}))
    os.symlink(outside, root / "node_modules" / "evil")
    envs = [e for e in walk([root]) if isinstance(e, Environment) and e.kind == "node_modules"]
    assert len(envs) == 1
    found = pkgs(envs[0])
    assert found[("debug", "4.4.2")].paths == (("proj", "a", "debug"),)  # type: ignore[attr-defined]
    assert ("chalk", "5.6.1") in found and ("evil", "6.6.6") not in found


def test_walker_reports_bad_files_and_goes_on(tmp_path: Path) -> None:
    (tmp_path / "good").mkdir()
    (tmp_path / "good" / "package-lock.json").write_text(json.dumps(NPM_V3))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "package-lock.json").write_text('{"lockfileVersion": 3, "packages": ')
    (tmp_path / "skip").mkdir()
    (tmp_path / "skip" / "pnpm-lock.yaml").write_text(PNPM_V9)
    results = list(walk([tmp_path], exclude=["skip"]))
    assert [type(r).__name__ for r in results] == ["FileError", "Environment"]
    assert isinstance(results[0], FileError) and "JSON" in results[0].message


def test_yaml_bomb_is_bounded() -> None:
    bomb = "lockfileVersion: '9.0'\na: &a ['x','x','x','x','x','x','x','x','x']\n"
    for i in range(1, 15):  # 9 * 3**14 = 43 million nodes once expanded: over the loader's limit
        bomb += f"{chr(97 + i)}: &{chr(97 + i)} [*{chr(96 + i)},*{chr(96 + i)},*{chr(96 + i)}]\n"
    bomb += "importers: {}\npackages: {}\n"
    with pytest.raises(InventoryError, match="expands to more than"):
        PnpmLockExtractor().extract("pnpm-lock.yaml", bomb.encode(), NO_SIBLING)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048))
def test_fuzz_every_parser_fails_only_clearly(blob: bytes) -> None:
    for extractor in EXTRACTORS:
        with contextlib.suppress(InventoryError):
            extractor.extract("x", blob, NO_SIBLING)


@pytest.mark.skipif(not LOCKFILES.is_dir(), reason="shared corpus not present")
@pytest.mark.parametrize(("name", "target", "minimum"), [
    ("npm-cli.package-lock.json", "package-lock.json", 1200),
    ("babel.yarn-berry.lock", "yarn.lock", 1500),
    ("excalidraw.yarn-classic.lock", "yarn.lock", 1400),
    ("vite.pnpm-lock.yaml", "pnpm-lock.yaml", 1400),
    ("hono.bun.lock", "bun.lock", 1100),
    ("elysia.bun.lock", "bun.lock", 250),
])
def test_real_lockfiles(tmp_path: Path, name: str, target: str, minimum: int) -> None:
    (tmp_path / target).write_bytes((LOCKFILES / name).read_bytes())
    envs = [e for e in walk([tmp_path]) if isinstance(e, Environment)]
    assert len(envs) == 1
    env = envs[0]
    assert len(env.packages) >= minimum
    reached = sum(1 for p in env.packages if p.paths)
    assert reached / len(env.packages) >= 0.99


def test_cyclonedx_and_spdx_by_purl() -> None:
    from chainwatch.inventory.sbom import SbomExtractor

    cdx = {"bomFormat": "CycloneDX", "specVersion": "1.5",
           "metadata": {"component": {"bom-ref": "root", "name": "svc"}},
           "components": [
               {"bom-ref": "a", "purl": "pkg:npm/a@1.0.0"},
               {"bom-ref": "d", "purl": "pkg:npm/%40duckdb/node-api@1.3.3"},
               {"bom-ref": "c", "purl": "pkg:npm/@scope/raw@2.0.0", "scope": "optional"},
               {"bom-ref": "py", "purl": "pkg:pypi/requests@2.0.0"}],
           "dependencies": [{"ref": "root", "dependsOn": ["a", "c"]},
                            {"ref": "a", "dependsOn": ["d"]}]}
    env = SbomExtractor().extract("bom.json", json.dumps(cdx).encode(), NO_SIBLING)
    found = pkgs(env)
    assert set(found) == {("a", "1.0.0"), ("@duckdb/node-api", "1.3.3"), ("@scope/raw", "2.0.0")}
    assert found[("@duckdb/node-api", "1.3.3")].paths == (("svc", "a", "@duckdb/node-api"),)  # type: ignore[attr-defined]
    assert found[("@scope/raw", "2.0.0")].optional  # type: ignore[attr-defined]
    spdx = {"spdxVersion": "SPDX-2.3", "name": "svc", "documentDescribes": ["SPDXRef-root"],
            "packages": [
                {"SPDXID": "SPDXRef-root", "name": "svc"},
                {"SPDXID": "SPDXRef-a", "externalRefs": [{"referenceCategory": "PACKAGE-MANAGER",
                 "referenceType": "purl", "referenceLocator": "pkg:npm/a@1.0.0"}]},
                {"SPDXID": "SPDXRef-d", "externalRefs": [{"referenceCategory": "PACKAGE_MANAGER",
                 "referenceType": "purl", "referenceLocator": "pkg:npm/debug@4.4.2"}]}],
            "relationships": [
                {"spdxElementId": "SPDXRef-root", "relationshipType": "DEPENDS_ON",
                 "relatedSpdxElement": "SPDXRef-a"},
                {"spdxElementId": "SPDXRef-d", "relationshipType": "DEPENDENCY_OF",
                 "relatedSpdxElement": "SPDXRef-a"}]}
    env = SbomExtractor().extract("app.spdx.json", json.dumps(spdx).encode(), NO_SIBLING)
    assert pkgs(env)[("debug", "4.4.2")].paths == (("svc", "a", "debug"),)  # type: ignore[attr-defined]
    hits = expose(env, BuiltinKnownBad()).hits
    assert [(h.package.name, h.package.version) for h in hits] == [("debug", "4.4.2")]


def _layer(files: dict[str, bytes | None], gz: bool = False) -> bytes:
    import gzip
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    raw = buf.getvalue()
    return gzip.compress(raw) if gz else raw


def _tar(path: Path, members: dict[str, bytes]) -> None:
    import io
    import tarfile

    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


LOCK_BAD = json.dumps({"name": "svc", "lockfileVersion": 3, "packages": {
    "": {"name": "svc", "dependencies": {"debug": "^4"}},
    "node_modules/debug": {"version": "4.4.2"}}}).encode()


def test_docker_save_image_with_whiteouts(tmp_path: Path) -> None:
    base = _layer({"app/package-lock.json": LOCK_BAD,
                   "app/node_modules/debug/package.json":
                       json.dumps({"name": "debug", "version": "4.4.2"}).encode(),
                   "old/package-lock.json": LOCK_BAD,
                   "app/node_modules/debug/index.js": b"module.exports = 1"})
    top = _layer({"old/.wh..wh..opq": b"", "srv/package.json":
                  json.dumps({"name": "srv", "dependencies": {"chalk": "5.6.1"}}).encode(),
                  "app/node_modules/.wh.debug": b""})
    image = tmp_path / "svc.tar"
    _tar(image, {"manifest.json": json.dumps([{"Config": "c.json", "RepoTags": ["svc:1"],
                                               "Layers": ["l1/layer.tar", "l2/layer.tar"]}]).encode(),
                 "l1/layer.tar": base, "l2/layer.tar": top, "c.json": b"{}"})
    envs = [e for e in walk([image]) if isinstance(e, Environment)]
    kinds = sorted((e.id, e.kind) for e in envs)
    assert kinds == [("svc:1!/app/package-lock.json", "image:package-lock"),
                     ("svc:1!/srv/package.json", "image:package.json")]
    hits = {(h.package.name, h.package.version) for e in envs
            for h in expose(e, BuiltinKnownBad()).hits}
    assert hits == {("debug", "4.4.2"), ("chalk", "5.6.1")}


def test_oci_layout_image(tmp_path: Path) -> None:
    import hashlib

    layer = _layer({"app/package-lock.json": LOCK_BAD}, gz=True)
    digest = "sha256:" + hashlib.sha256(layer).hexdigest()
    manifest = json.dumps({"schemaVersion": 2, "layers": [
        {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest}]}).encode()
    mdigest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    image = tmp_path / "svc.oci"
    _tar(image, {"oci-layout": b'{"imageLayoutVersion": "1.0.0"}',
                 "index.json": json.dumps({"manifests": [{"digest": mdigest}]}).encode(),
                 f"blobs/{mdigest.replace(':', '/')}": manifest,
                 f"blobs/{digest.replace(':', '/')}": layer})
    envs = [e for e in walk([image]) if isinstance(e, Environment)]
    assert [p.name for e in envs for p in e.packages] == ["debug"]


def test_unreadable_folder_is_reported(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads every folder")
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "package-lock.json").write_text(json.dumps(NPM_V3))
    locked.chmod(0)
    try:
        results = list(walk([tmp_path]))
    finally:
        locked.chmod(0o755)
    assert any(isinstance(r, FileError) and "cannot read" in r.message for r in results)


@pytest.mark.parametrize(("doc", "says"), [
    ({}, "no lockfileVersion, 'packages' or 'dependencies' (not an npm lockfile)"),
    ({"lockfileVersion": 3}, "no 'packages' or 'dependencies' (lockfileVersion 3)"),
    ({"lockfileVersion": "\x1b[2J3"},
     "no 'packages' or 'dependencies' (and lockfileVersion is not a number)"),
])
def test_an_empty_package_lock_says_what_it_lacks_the_same_in_inventory_and_upload(
        doc: dict[str, object], says: str) -> None:
    from chainwatch.errors import UsageError
    from chainwatch.inventory.upload import parse_upload

    data = json.dumps(doc).encode()
    with pytest.raises(InventoryError) as inv:
        NpmLockExtractor().extract("package-lock.json", data, NO_SIBLING)
    assert str(inv.value) == says
    with pytest.raises(UsageError) as up:
        parse_upload("package-lock.json", data)
    assert str(up.value) == f"package-lock.json: {says}"
