"""Policy parsing and the check rules, against an in-process fake registry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from chainwatch.errors import UsageError
from chainwatch.gate.check import Checker
from chainwatch.gate.policy import load_policy, parse_duration
from chainwatch.intel import BuiltinKnownBad
from chainwatch.model import Environment, InstalledPackage
from chainwatch.registry import NpmConfig, RegistryClient

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
REG = "https://registry.test.invalid/"


def version(v: str, scripts: dict[str, str] | None = None, provenance: bool = False,
            publisher: str = "alice") -> dict[str, Any]:
    doc: dict[str, Any] = {"name": "pkg", "version": v, "scripts": scripts or {},
                           "_npmUser": {"name": publisher, "email": f"{publisher}@x.invalid"},
                           "dist": {"tarball": f"{REG}pkg/-/pkg-{v}.tgz"}}
    if provenance:
        doc["dist"]["attestations"] = {"provenance": {"predicateType": "slsa"}}
    return doc


PACKUMENT = {
    "name": "pkg", "dist-tags": {"latest": "1.3.0"},
    "versions": {"1.0.0": version("1.0.0", provenance=True),
                 "1.1.0": version("1.1.0", provenance=True),
                 "1.2.0": version("1.2.0", {"postinstall": "node x.js"}, publisher="mallory"),
                 "1.3.0": version("1.3.0", {"postinstall": "node x.js"}, provenance=True)},
    "time": {"1.0.0": "2026-01-01T00:00:00Z", "1.1.0": "2026-06-01T00:00:00Z",
             "1.2.0": "2026-11-20T00:00:00Z", "1.3.0": (NOW - timedelta(hours=3)).isoformat()},
}


def checker(tmp_path: Path, policy_text: str = "") -> Checker:
    path = tmp_path / "policy.toml"
    path.write_text(policy_text)
    client = RegistryClient(NpmConfig(registry=REG), tmp_path, backoff=0,
                            transport=httpx.MockTransport(
                                lambda r: httpx.Response(200, json=PACKUMENT)))
    return Checker(load_policy(path), client, BuiltinKnownBad(), now=NOW)


def rules(c: Checker, v: str) -> dict[str, str]:
    return {d.rule: d.action for d in c.evaluate("pkg", v)}


def test_durations() -> None:
    assert parse_duration("48h") == timedelta(hours=48)
    assert parse_duration("7d") == timedelta(days=7) and parse_duration("2w") == timedelta(days=14)
    with pytest.raises(UsageError):
        parse_duration("soon")


def test_rules_on_a_fake_registry(tmp_path: Path) -> None:
    c = checker(tmp_path)
    assert rules(c, "1.0.0") == {}
    # too young, and its install script is not allow-listed
    assert rules(c, "1.3.0") == {"min-age": "block", "install-scripts": "warn"}
    # a new install script since 1.1.0, provenance lost, new publisher
    assert rules(c, "1.2.0") == {"new-install-script": "block", "trust-downgrade": "block",
                                 "publisher-change": "warn"}
    blocked = [d for d in c.evaluate("pkg", "1.3.0") if d.action == "block"]
    assert blocked[0].suggestion == "1.1.0"  # 1.2.0 is old enough, but 1.1.0 passes all


def test_policy_file_overrides_and_exceptions(tmp_path: Path) -> None:
    text = """
[min-age]
duration = "1h"
[install-scripts]
action = "off"
new-in-bump = "warn"
[trust-downgrade]
action = "off"
[[exceptions]]
package = "pkg@1.2.x"
reason = "reviewed by security on 2026-11-21"
expires = "2099-01-01"
"""
    c = checker(tmp_path, text)
    assert rules(c, "1.3.0") == {}
    assert rules(c, "1.2.0") == {"exception": "allow"}  # the exception covers it, visibly
    expired = text.replace("2099-01-01", "2020-01-01")
    c = checker(tmp_path, expired)
    assert rules(c, "1.2.0") == {"new-install-script": "warn", "publisher-change": "warn"}


@pytest.mark.parametrize("text", [
    "[min-age]\naction = 'maybe'\n",
    "[[exceptions]]\npackage = 'pkg'\nreason = 'x'\nexpires = 2099-01-01\n",
    "[[exceptions]]\npackage = 'pkg@not a range'\nreason = 'x'\nexpires = 2099-01-01\n",
    "this is not toml [",
])
def test_bad_policies_are_clear_errors(tmp_path: Path, text: str) -> None:
    path = tmp_path / "p.toml"
    path.write_text(text)
    with pytest.raises(UsageError):
        load_policy(path)


def test_check_places_decisions_and_known_bad_needs_no_registry(tmp_path: Path) -> None:
    c = checker(tmp_path)
    env = Environment("package-lock.json", "package-lock", "package-lock.json", (
        InstalledPackage("pkg", "1.3.0", paths=(("app", "pkg"),)),
        InstalledPackage("chalk", "5.6.1", dev=True, paths=(("app", "chalk"),))))
    placed = c.check([env])
    assert {(p.decision.name, p.decision.rule) for p in placed} >= {
        ("pkg", "min-age"), ("chalk", "known-bad")}
    chalk = next(p for p in placed if p.decision.rule == "known-bad")
    assert chalk.dev and chalk.path == ("app", "chalk") and chalk.source == "package-lock.json"
    assert all(p.decision.reason for p in placed)
    assert "chalk@5.6.1" in chalk.decision.reason or "CW-2025-QIX" in chalk.decision.reason


# -- the scan rule ---------------------------------------------------------------------------
def _scan_registry(times: dict[str, str]) -> tuple[dict[str, Any], dict[str, bytes]]:
    import base64
    import hashlib

    from tests.helpers import BENIGN_INDEX, clipper_source, make_tgz, manifest

    bodies = {
        "1.0.0": {"index.js": BENIGN_INDEX},
        "1.0.1": {"index.js": BENIGN_INDEX + "\n" + clipper_source()},
        "1.0.2": {"index.js": BENIGN_INDEX + "\n// typo fixed\n"},
    }
    tarballs = {v: make_tgz({"package.json": manifest(version=v), **files})
                for v, files in bodies.items()}
    doc = {"name": "left-padder", "dist-tags": {"latest": "1.0.2"},
           "time": times, "versions": {v: {
               "name": "left-padder", "version": v,
               "dist": {"tarball": f"{REG}left-padder/-/left-padder-{v}.tgz",
                        "integrity": "sha512-" + base64.b64encode(
                            hashlib.sha512(t).digest()).decode()}}
               for v, t in tarballs.items()}}
    return doc, tarballs


def _scan_checker(tmp_path: Path, db: str, times: dict[str, str],
                  policy_text: str = "") -> tuple[Checker, Any, list[str]]:
    from chainwatch.gate.scanning import ScanGate
    from chainwatch.scan import Scanner
    from chainwatch.verdicts import VerdictStore

    doc, tarballs = _scan_registry(times)
    fetched: list[str] = []

    def registry(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.endswith(".tgz"):
            fetched.append(path.rsplit("-", 1)[-1][:-4])
            return httpx.Response(200, content=tarballs[path.rsplit("-", 1)[-1][:-4]])
        return httpx.Response(200, json=doc)

    client = RegistryClient(NpmConfig(registry=REG), tmp_path / "cache", backoff=0,
                            transport=httpx.MockTransport(registry))
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "p.toml").write_text(policy_text)
    policy = load_policy(tmp_path / "p.toml", min_age="1h")
    gate = ScanGate(Scanner(client, workers=1), VerdictStore(db), policy.scan_window)
    return Checker(policy, client, BuiltinKnownBad(), now=NOW, scans=gate), gate, fetched


def test_scan_rule_blocks_a_malicious_release_and_remembers_it(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'v.db'}"
    times = {"1.0.0": "2026-11-01T00:00:00Z", "1.0.1": "2026-11-20T00:00:00Z",
             "1.0.2": "2026-11-21T00:00:00Z"}
    c, gate, _fetched = _scan_checker(tmp_path, db, times)
    decisions = c.evaluate("left-padder", "1.0.1")
    scan = [d for d in decisions if d.rule.startswith("scan-")]
    assert [(d.rule, d.action) for d in scan] == [("scan-malicious", "block")]
    assert "against 1.0.0" in scan[0].reason
    # 1.0.2 is clean against its baseline 1.0.1, and is what check suggests instead
    assert scan[0].suggestion == "1.0.2" and gate.scans == 2
    assert not [d for d in c.evaluate("left-padder", "1.0.2") if d.rule.startswith("scan-")]
    # a second run (a new process) asks the database and scans nothing
    c2, gate2, fetched2 = _scan_checker(tmp_path / "again", db, times)
    assert {d.rule for d in c2.evaluate("left-padder", "1.0.1")} >= {"scan-malicious"}
    assert gate2.scans == 0 and fetched2 == []


def test_a_sandbox_gate_does_not_trust_a_benign_verdict_made_without_the_sandbox(
        tmp_path: Path) -> None:
    """[scan] sandbox = true: a release judged benign by a static-only scan is judged again
    (its install scripts may do what static analysis missed); a flagged verdict still counts."""
    db = f"sqlite:///{tmp_path / 'v.db'}"
    times = {"1.0.0": "2026-11-01T00:00:00Z", "1.0.1": "2026-11-20T00:00:00Z",
             "1.0.2": "2026-11-21T00:00:00Z"}
    c, _gate, _ = _scan_checker(tmp_path, db, times)
    c.evaluate("left-padder", "1.0.1")
    c.evaluate("left-padder", "1.0.2")
    doc, _ = _scan_registry(times)
    _c2, gate2, _ = _scan_checker(tmp_path / "again", db, times)
    integrity = {v: doc["versions"][v]["dist"]["integrity"] for v in ("1.0.1", "1.0.2")}
    static_benign = gate2.cached("left-padder", "1.0.2", integrity["1.0.2"])
    assert static_benign is not None and static_benign.level.value == "benign"
    gate2.scanner.sandbox = True
    assert gate2.cached("left-padder", "1.0.2", integrity["1.0.2"]) is None
    flagged = gate2.cached("left-padder", "1.0.1", integrity["1.0.1"])
    assert flagged is not None and flagged.level.value == "malicious"


def test_scan_rule_window_and_actions(tmp_path: Path) -> None:
    old = {"1.0.0": "2024-01-01T00:00:00Z", "1.0.1": "2024-02-01T00:00:00Z",
           "1.0.2": "2024-03-01T00:00:00Z"}
    c, gate, fetched = _scan_checker(tmp_path, f"sqlite:///{tmp_path / 'v.db'}", old)
    assert not [d for d in c.evaluate("left-padder", "1.0.1") if d.rule.startswith("scan-")]
    assert gate.scans == 0 and fetched == []  # older than the 30-day window: not scanned
    recent = {"1.0.0": "2026-11-01T00:00:00Z", "1.0.1": "2026-11-20T00:00:00Z",
              "1.0.2": "2026-11-21T00:00:00Z"}
    c, gate, _ = _scan_checker(tmp_path / "w", f"sqlite:///{tmp_path / 'w.db'}", recent,
                               "[scan]\nmalicious = 'warn'\n")
    assert {(d.rule, d.action) for d in c.evaluate("left-padder", "1.0.1")} == {
        ("scan-malicious", "warn")}
    c, gate, _ = _scan_checker(tmp_path / "o", f"sqlite:///{tmp_path / 'o.db'}", recent,
                               "[scan]\nmalicious = 'off'\nsuspicious = 'off'\n")
    assert c.evaluate("left-padder", "1.0.1") == [] and gate.scans == 0


def test_scan_rule_in_policy_show() -> None:
    shown = load_policy(None).to_toml()
    assert shown["scan"] == {"malicious": "block", "suspicious": "warn", "window": "30d",
                             "on_error": "block", "sandbox": False}


class _Listed:
    """A known-bad source with one list advisory and chainwatch's own verdict record."""

    def lookup(self, name: str, version: str) -> list[Any]:
        from chainwatch.intel.base import VERDICT_SOURCE
        from chainwatch.model import Advisory

        long = "listed as malicious by the maintainers' incident report " + "word " * 120
        return [Advisory(id="CW-VERDICT-x@1.0.0", package=name, versions=(version,),
                         summary="malicious (score 90) — critical finding: listed as …",
                         source=VERDICT_SOURCE),
                Advisory(id="GHSA-test", package=name, versions=(version,), summary=long,
                         source="osv")]


def test_known_bad_reason_names_the_list_not_our_memory_and_is_cut_at_a_word() -> None:
    from chainwatch.gate.policy import Policy

    found = Checker(Policy(min_age="off"), None, _Listed()).decide("x", "1.0.0", None)
    reasons = [why for action, rule, why in found if rule == "known-bad"]
    assert len(reasons) == 1 and reasons[0].startswith("listed by GHSA-test:")
    assert reasons[0].endswith("word…") and len(reasons[0]) < 460


class _Unpublished:
    """A registry whose packument no longer lists the version asked about."""

    def packument(self, name: str) -> dict[str, Any]:
        return {"name": name, "versions": {"1.0.0": {"name": name, "version": "1.0.0"}},
                "time": {"1.0.0": "2020-01-01T00:00:00Z"}}


def test_a_blocked_known_bad_version_gets_no_registry_noise() -> None:
    from chainwatch.gate.policy import Policy

    checker = Checker(Policy(), _Unpublished(), _Listed())  # type: ignore[arg-type]
    rules = [d.rule for d in checker.evaluate("x", "1.0.1")]
    assert rules == ["known-bad"]
    clean = Checker(Policy(), _Unpublished(), BuiltinKnownBad())  # type: ignore[arg-type]
    assert [d.rule for d in clean.evaluate("x", "1.0.1")] == ["registry"]  # still said otherwise


def test_an_exploratory_verdict_without_a_baseline_does_not_decide_and_is_replaced(
        tmp_path: Path) -> None:
    """A stored flagged verdict made without a baseline (scan --against none) for a release
    that has a previous version is not used by the gate: the release is scanned against it
    (even outside the window), and that verdict, benign too, replaces the exploratory one;
    an exploratory scan never replaces a baseline verdict."""
    import dataclasses

    from chainwatch.model import Level
    from chainwatch.verdicts import VerdictStore

    db = f"sqlite:///{tmp_path / 'v.db'}"
    old = {"1.0.0": "2024-01-01T00:00:00Z", "1.0.1": "2024-02-01T00:00:00Z",
           "1.0.2": "2024-03-01T00:00:00Z"}
    c, gate, _ = _scan_checker(tmp_path, db, old)
    doc, _ = _scan_registry(old)
    alone = gate.scanner.scan("left-padder@1.0.2", "none", doc)
    assert alone.baseline is None
    exploratory = dataclasses.replace(alone, level=Level.SUSPICIOUS, score=40)
    store = VerdictStore(db)
    assert store.put(exploratory).level is Level.SUSPICIOUS
    gate.preload({"left-padder"})
    decisions = c.evaluate("left-padder", "1.0.2")
    assert not [d for d in decisions if d.rule.startswith("scan-")], decisions
    integrity = doc["versions"]["1.0.2"]["dist"]["integrity"]
    now = store.get("left-padder", "1.0.2", integrity)
    assert now is not None and now.level is Level.BENIGN and now.baseline == "1.0.1"
    store.put(exploratory)  # a later exploratory scan does not replace the baseline verdict
    kept = store.get("left-padder", "1.0.2", integrity)
    assert kept is not None and kept.level is Level.BENIGN and kept.baseline == "1.0.1"
