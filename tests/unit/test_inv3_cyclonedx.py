"""``inventory --format cyclonedx``: hashes, the dependency graph, the root (issue 12 A).

Before: components only (no hashes, no ``dependencies``, no ``metadata.component``), so an SBOM
consumer could neither verify a tarball nor tell how a package got in. Validated against the
official CycloneDX 1.6 JSON schema shipped by cyclonedx-python-lib.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from chainwatch.inventory.npm_lock import NpmLockExtractor
from chainwatch.inventory.pnpm_lock import PnpmLockExtractor
from chainwatch.inventory.sbom import SbomExtractor
from chainwatch.model import Environment
from chainwatch.output.cyclonedx import inventory_cyclonedx, sri_hashes

validation = pytest.importorskip("cyclonedx.validation.json")
schema = pytest.importorskip("cyclonedx.schema")


def _none(_: str) -> None:
    return None


def _sri(algorithm: str, data: bytes) -> str:
    return f"{algorithm}-{base64.b64encode(hashlib.new(algorithm, data).digest()).decode()}"


def _valid(text: str) -> None:
    error = validation.JsonStrictValidator(schema.SchemaVersion.V1_6).validate_str(text)
    assert error is None, error


NPM = {"name": "app", "lockfileVersion": 3, "packages": {
    "": {"name": "app", "version": "1.0.0", "dependencies": {"debug": "^4", "@s/b": "^1"},
         "devDependencies": {"t": "^1"}, "workspaces": ["packages/web"]},
    "packages/web": {"name": "web", "dependencies": {"ms": "^2"}},
    "node_modules/web": {"resolved": "packages/web", "link": True},
    "node_modules/debug": {"version": "4.4.1", "integrity": _sri("sha512", b"debug"),
                           "resolved": "https://registry.npmjs.org/debug/-/debug-4.4.1.tgz",
                           "dependencies": {"ms": "^2.1.3"}},
    "node_modules/ms": {"version": "2.1.3", "integrity": _sri("sha1", b"ms")},
    "node_modules/@s/b": {"version": "1.2.0", "integrity": "sha512-notbase64!!"},
    "node_modules/t": {"version": "1.0.0", "dev": True, "dependencies": {"ms": "^2"}},
}}


def _npm() -> Environment:
    return NpmLockExtractor().extract("app/package-lock.json", json.dumps(NPM).encode(), _none)


def _bom(envs: list[Environment]) -> dict[str, Any]:
    text = inventory_cyclonedx(envs)
    _valid(text)
    return dict(json.loads(text))


def test_hashes_from_integrity_in_hex_with_cyclonedx_names() -> None:
    assert sri_hashes(_sri("sha512", b"x") + " " + _sri("sha1", b"x") + "?opt") == [
        {"alg": "SHA-512", "content": hashlib.sha512(b"x").hexdigest()},
        {"alg": "SHA-1", "content": hashlib.sha1(b"x").hexdigest()}]
    # not base64, a wrong length, an unknown algorithm: left out, never guessed
    short = base64.b64encode(b"short").decode()
    assert sri_hashes(f"sha512-!!! sha512-{short} md5-{short}") == []
    components = {c["name"]: c for c in _bom([_npm()])["components"]}
    assert components["debug"]["hashes"] == [
        {"alg": "SHA-512", "content": hashlib.sha512(b"debug").hexdigest()}]
    assert components["ms"]["hashes"] == [{"alg": "SHA-1", "content": hashlib.sha1(b"ms").hexdigest()}]
    assert "hashes" not in components["b"] and components["b"]["group"] == "@s"
    assert components["b"]["purl"] == "pkg:npm/%40s/b@1.2.0"
    assert components["t"]["scope"] == "excluded"


def test_dependency_graph_and_root_component() -> None:
    bom = _bom([_npm()])
    root = bom["metadata"]["component"]
    assert root["name"] == "app" and root["type"] == "application"
    graph = {d["ref"]: d["dependsOn"] for d in bom["dependencies"]}
    web = next(c["bom-ref"] for c in bom["components"] if c["name"] == "web")
    assert graph[root["bom-ref"]] == sorted(
        ["pkg:npm/debug@4.4.1", "pkg:npm/%40s/b@1.2.0", "pkg:npm/t@1.0.0", web])
    assert graph["pkg:npm/debug@4.4.1"] == ["pkg:npm/ms@2.1.3"]
    assert graph[web] == ["pkg:npm/ms@2.1.3"] and graph["pkg:npm/ms@2.1.3"] == []
    refs = {c["bom-ref"] for c in bom["components"]} | {root["bom-ref"]}
    assert all(r in refs for d in bom["dependencies"] for r in [d["ref"], *d["dependsOn"]])


PNPM9 = """lockfileVersion: '9.0'
importers:
  .:
    dependencies:
      chalk: {specifier: ^5, version: 5.6.2}
packages:
  chalk@5.6.2:
    resolution: {integrity: CHALK}
  supports-color@9.0.0:
    resolution: {integrity: SUPPORTS}
snapshots:
  chalk@5.6.2:
    dependencies:
      supports-color: 9.0.0
  supports-color@9.0.0: {}
""".replace("CHALK", _sri("sha512", b"chalk")).replace("SUPPORTS", _sri("sha512", b"sc"))


def test_several_environments_and_our_own_reader_reads_it_back(tmp_path: Path) -> None:
    pnpm = PnpmLockExtractor().extract("web/pnpm-lock.yaml", PNPM9.encode(), _none)
    bom = _bom([_npm(), pnpm])
    # "app/package-lock.json" and "web/pnpm-lock.yaml" share no named folder
    assert bom["metadata"]["component"]["name"] == "chainwatch inventory"
    graph = {d["ref"]: d["dependsOn"] for d in bom["dependencies"]}
    assert graph["pkg:npm/chalk@5.6.2"] == ["pkg:npm/supports-color@9.0.0"]
    assert len(graph["inventory"]) == 2
    back = SbomExtractor().extract("bom.json", json.dumps(bom).encode(), _none)
    assert {(p.name, p.version) for p in back.packages} == {
        (p.name, p.version) for env in (_npm(), pnpm) for p in env.packages}
    sc = next(p for p in back.packages if p.name == "supports-color")
    assert any(path[-2:] == ("chalk", "supports-color") for path in sc.paths)


def test_the_schema_check_itself_can_fail() -> None:
    bom = _bom([_npm()])
    bom["components"][0]["hashes"] = [{"alg": "SHA-512", "content": "not hex"}]
    with pytest.raises(AssertionError):
        _valid(json.dumps(bom))


def test_the_same_name_and_version_with_other_bytes_is_its_own_component() -> None:
    """An alias to another registry resolving to a@1.0.0 with other bytes was merged into the
    registry's a@1.0.0: its hash and download URL were gone from the SBOM."""
    good, evil = _sri("sha512", b"registry"), _sri("sha512", b"elsewhere")
    lock = json.dumps({"name": "app", "lockfileVersion": 3, "packages": {
        "": {"name": "app", "dependencies": {"a": "1.0.0", "al": "npm:a@1.0.0"}},
        "node_modules/a": {"version": "1.0.0", "integrity": good,
                           "resolved": "https://registry.npmjs.org/a/-/a-1.0.0.tgz"},
        "node_modules/al": {"name": "a", "version": "1.0.0", "integrity": evil,
                            "resolved": "https://evil.example.invalid/a-1.0.0.tgz"}}})
    env = NpmLockExtractor().extract("package-lock.json", lock.encode(), _none)
    text = inventory_cyclonedx([env])
    _valid(text)
    copies = [c for c in json.loads(text)["components"] if c["name"] == "a"]
    assert len(copies) == 2 and len({c["bom-ref"] for c in copies}) == 2
    urls = {c["externalReferences"][0]["url"] for c in copies}
    assert urls == {"https://registry.npmjs.org/a/-/a-1.0.0.tgz",
                    "https://evil.example.invalid/a-1.0.0.tgz"}


def test_an_sbom_purl_type_is_read_whatever_its_case() -> None:
    from chainwatch.inventory.sbom import npm_purl

    assert npm_purl("pkg:NPM/debug@4.4.2") == ("debug", "4.4.2")
    assert npm_purl("PKG:npm/%40scope/x@1.0.0") == ("@scope/x", "1.0.0")
    assert npm_purl("pkg:pypi/debug@4.4.2") is None


def test_several_environments_of_one_project_are_named_after_its_folder() -> None:
    lock = PnpmLockExtractor().extract("/srv/shop/pnpm-lock.yaml", PNPM9.encode(), _none)
    web = PnpmLockExtractor().extract("/srv/shop/web/pnpm-lock.yaml", PNPM9.encode(), _none)
    assert _bom([lock, web])["metadata"]["component"]["name"] == "shop"
