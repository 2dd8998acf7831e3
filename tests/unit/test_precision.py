"""Precision without a baseline (issue 13 B): concentration per file, the established prior, the
script-line rank, and a local tarball judged against its registry history when its bytes match."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from chainwatch.analysis.prior import established
from chainwatch.analysis.scoring import rank, score
from chainwatch.model import Finding, Level, Severity
from chainwatch.registry.client import Tarball
from chainwatch.scan import Scanner, sri_sha512
from tests.helpers import BENIGN_INDEX, clipper_source, make_tgz, manifest


def finding(rule: str, severity: Severity, capability: str, file: str,
            install_time: bool = False) -> Finding:
    return Finding(rule=rule, severity=severity, technique=capability, capability=capability,
                   message=rule, file=file, install_time=install_time)


def spread(files: int) -> list[Finding]:
    """A framework's kind of evidence: eval here, a long line there, an entropy blob elsewhere."""
    kinds = [("CW-EVAL-FUNCTION-CTOR", "eval"), ("CW-OBF-LONG-LINE", "obfuscation"),
             ("CW-OBF-ENTROPY-BLOB", "obfuscation"), ("CW-EVAL-VM", "eval")]
    return [finding(kinds[i % 4][0], Severity.MEDIUM, kinds[i % 4][1], f"lib/f{i}.js")
            for i in range(files)]


# -- concentration ----------------------------------------------------------------------------
def test_medium_findings_spread_over_unrelated_files_saturate_standalone() -> None:
    findings = spread(40)
    assert score(findings, small_package=False, standalone=True).level is Level.BENIGN
    # the very same findings counted whole (the old standalone sum) reach suspicious
    assert score(findings, small_package=False).level is Level.SUSPICIOUS


def test_the_same_evidence_in_one_file_is_still_suspicious_standalone() -> None:
    together = [replace(f, file="lib/payload.js") for f in spread(4)]
    assert score(together, small_package=False, standalone=True).level is Level.SUSPICIOUS


def test_concentration_leaves_small_packages_and_diffs_alone() -> None:
    # a small package is one payload: behaviour in different files adds up as before
    assert score(spread(4), small_package=True, standalone=True).level is Level.SUSPICIOUS


def playwright_like_bundle(gap: int) -> list[Finding]:
    """playwright-core's lib/coreBundle.js (h/top1000), reduced: a CLI daemon launched detached
    (two dropper rules on one spawn) in one module, eval and the Function constructor in a
    selector engine and a page evaluator of other modules, ``gap`` lines apart."""
    places = [("CW-DROPPER-HIDDEN-PROCESS", "hidden-process", 0),
              ("CW-DROPPER-SILENT-SPAWN", "hidden-process", 0),
              ("CW-EVAL-DYNAMIC", "eval", 1),
              ("CW-EVAL-FUNCTION-CTOR", "eval", 2),
              ("CW-EVAL-DYNAMIC-LOAD", "eval", 3)]
    return [replace(finding(rule, Severity.MEDIUM, cap, "lib/coreBundle.js"), line=10 + n * gap)
            for rule, cap, n in places]


def test_distant_modules_of_one_bundle_are_different_places_standalone() -> None:
    apart = playwright_like_bundle(gap=20_000)
    assert score(apart, small_package=False, standalone=True,
                 established=True).level is Level.BENIGN
    # the same findings within a few lines of each other are one payload: still suspicious
    together = playwright_like_bundle(gap=20)
    assert score(together, small_package=False, standalone=True,
                 established=True).level is Level.SUSPICIOUS
    # a minified bundle (everything on one line) stays one place
    one_line = playwright_like_bundle(gap=0)
    assert score(one_line, small_package=False, standalone=True,
                 established=True).level is Level.SUSPICIOUS
    # and with a baseline the regions change nothing: the diff decides
    assert score(apart, small_package=False).level is Level.SUSPICIOUS


# -- rank: the lifecycle command line is not counted twice --------------------------------------
def test_script_line_finding_is_not_bumped_but_install_time_code_is() -> None:
    line = finding("CW-INSTALL-INLINE-CODE", Severity.MEDIUM, "eval", "package.json", True)
    code = finding("CW-EVAL-DYNAMIC", Severity.MEDIUM, "eval", "install.js", True)
    assert rank(line) == Severity.MEDIUM.rank
    assert rank(code) == Severity.HIGH.rank


# -- the established prior --------------------------------------------------------------------
HIGH_DROPPER = finding("CW-DROPPER-DOWNLOAD-EXEC", Severity.HIGH, "dropper", "install.js")


def test_one_high_finding_in_an_established_release_is_not_enough() -> None:
    assert score([HIGH_DROPPER], small_package=False, standalone=True).level is Level.SUSPICIOUS
    calm = score([HIGH_DROPPER], small_package=False, standalone=True, established=True)
    assert calm.level is Level.BENIGN
    assert "established" in calm.explanation


def test_two_high_findings_in_one_file_flag_an_established_release() -> None:
    run = finding("CW-DROPPER-RUN-BUNDLED", Severity.HIGH, "dropper", "install.js")
    v = score([HIGH_DROPPER, run], small_package=False, standalone=True, established=True)
    assert v.level is Level.SUSPICIOUS
    # the same two in unrelated files of a framework are two capabilities, not one attack
    apart = score([HIGH_DROPPER, replace(run, file="lib/editor.js")], small_package=False,
                  standalone=True, established=True)
    assert apart.level is Level.BENIGN


def test_established_never_softens_critical_or_a_combination() -> None:
    crit = finding("CW-ARCHIVE-TRAVERSAL", Severity.CRITICAL, "archive-anomaly", "x")
    assert score([crit], small_package=False, standalone=True,
                 established=True).level is Level.MALICIOUS
    hook = finding("CW-BROWSER-FETCH-HOOK", Severity.HIGH, "browser-hook", "dist/index.js")
    theft = finding("CW-WALLET-ADDRESSES", Severity.HIGH, "wallet", "dist/index.js")
    assert score([hook, theft], small_package=False, standalone=True,
                 established=True).level is Level.MALICIOUS


def test_established_weighs_only_standalone() -> None:
    v = score([HIGH_DROPPER], small_package=False, standalone=False, established=True)
    assert v.level is Level.SUSPICIOUS


def history(count: int, first: str, latest: str) -> dict[str, Any]:
    versions = {f"1.0.{i}": {} for i in range(count)}
    times = {f"1.0.{i}": first for i in range(count - 1)}
    times[f"1.0.{count - 1}"] = latest
    return {"versions": versions, "time": times}


@pytest.mark.parametrize(("name", "version", "scripts", "doc", "verified", "expected"), [
    ("some-lib", "1.0.29", {}, history(30, "2020-01-01T00:00:00Z", "2026-01-01T00:00:00Z"),
     True, True),
    # the bytes are not known to be the registry's: nothing about the name is believed
    ("some-lib", "1.0.29", {}, history(30, "2020-01-01T00:00:00Z", "2026-01-01T00:00:00Z"),
     False, False),
    ("react", "19.0.0", {}, None, False, False),
    # a package that is young, or has few versions, has no history to lean on
    ("some-lib", "1.0.29", {}, history(30, "2025-10-01T00:00:00Z", "2026-01-01T00:00:00Z"),
     True, False),
    ("some-lib", "1.0.4", {}, history(5, "2020-01-01T00:00:00Z", "2026-01-01T00:00:00Z"),
     True, False),
    # an install hook, or a version that is not a plain release
    ("some-lib", "1.0.29", {"postinstall": "node x.js"},
     history(30, "2020-01-01T00:00:00Z", "2026-01-01T00:00:00Z"), True, False),
    ("react", "19.0.0-rc.1", {}, None, True, False),
    ("react", "19.0.0", {}, None, True, True),
])
def test_established_needs_verified_bytes_history_and_no_hook(
        name: str, version: str, scripts: dict[str, str], doc: dict[str, Any] | None,
        verified: bool, expected: bool) -> None:
    assert (established(name, version, scripts, doc, verified) is not None) is expected


# -- a local tarball that is a registry release ------------------------------------------------
class FakeRegistry:
    """A registry in memory: one packument, tarballs by URL."""

    def __init__(self, doc: dict[str, Any], tarballs: dict[str, bytes]) -> None:
        self.doc, self.tarballs = doc, tarballs
        self.asked = 0

    def packument(self, name: str) -> dict[str, Any]:
        self.asked += 1
        return self.doc

    def tarball(self, url: str, integrity: str | None, shasum: str | None) -> Tarball:
        return Tarball(self.tarballs[url])


def registry_with(old: bytes, new: bytes) -> FakeRegistry:
    def meta(version: str, data: bytes) -> dict[str, Any]:
        return {"name": "left-padder", "version": version,
                "dist": {"integrity": sri_sha512(data),
                         "tarball": f"https://registry.invalid/left-padder-{version}.tgz"}}
    doc = {"name": "left-padder", "dist-tags": {"latest": "1.0.1"},
           "versions": {"1.0.0": meta("1.0.0", old), "1.0.1": meta("1.0.1", new)},
           "time": {"1.0.0": "2024-01-01T00:00:00Z", "1.0.1": "2024-06-01T00:00:00Z"}}
    return FakeRegistry(doc, {f"https://registry.invalid/left-padder-{v}.tgz": d
                              for v, d in (("1.0.0", old), ("1.0.1", new))})


OLD = make_tgz({"package.json": manifest(version="1.0.0"), "index.js": BENIGN_INDEX})
NEW = make_tgz({"package.json": manifest(version="1.0.1"), "index.js": BENIGN_INDEX})


def scan_local(tmp_path: Path, data: bytes, registry: FakeRegistry,
               against: str | None = None) -> tuple[Any, list[str]]:
    path = tmp_path / "pkg.tgz"
    path.write_bytes(data)
    notes: list[str] = []
    scanner = Scanner(registry, workers=1, notice=notes.append)  # type: ignore[arg-type]
    return scanner.scan(str(path), against), notes


def test_matching_tarball_is_judged_against_its_registry_history(tmp_path: Path) -> None:
    verdict, notes = scan_local(tmp_path, NEW, registry_with(OLD, NEW))
    assert verdict.baseline is not None and str(verdict.baseline) == "left-padder@1.0.0"
    assert any(f.rule == "CW-REGISTRY-HISTORY" for f in verdict.findings)
    assert any("registry history" in n for n in notes)
    assert verdict.origin == "tarball"  # still keyed by the bytes read


def test_tarball_that_differs_from_the_registry_is_judged_alone(tmp_path: Path) -> None:
    tampered = make_tgz({"package.json": manifest(version="1.0.1"),
                         "index.js": clipper_source()})
    verdict, notes = scan_local(tmp_path, tampered, registry_with(OLD, NEW))
    assert verdict.baseline is None
    assert not any(f.rule == "CW-REGISTRY-HISTORY" for f in verdict.findings)
    assert any("differs" in n for n in notes)
    assert verdict.level is Level.MALICIOUS


def test_against_none_asks_no_registry(tmp_path: Path) -> None:
    registry = registry_with(OLD, NEW)
    verdict, _ = scan_local(tmp_path, NEW, registry, against="none")
    assert verdict.baseline is None and registry.asked == 0


def test_ambiguous_registry_integrity_is_no_match(tmp_path: Path) -> None:
    registry = registry_with(OLD, NEW)
    dist = registry.doc["versions"]["1.0.1"]["dist"]
    dist["integrity"] += " " + sri_sha512(b"other bytes")
    verdict, notes = scan_local(tmp_path, NEW, registry)
    assert verdict.baseline is None
    assert any("ambiguous" in n for n in notes)


def test_unreachable_registry_falls_back_to_standalone(tmp_path: Path) -> None:
    from chainwatch.errors import RegistryError

    class Down(FakeRegistry):
        def packument(self, name: str) -> dict[str, Any]:
            raise RegistryError("registry.invalid: connection refused")

    verdict, notes = scan_local(tmp_path, NEW, Down({}, {}))
    assert verdict.baseline is None
    assert notes == []  # a private tarball scanned offline is not worth a line on stderr

