"""Attacks found by the adversarial review of the hardened gate (2026-12-03), one test each:
a two-hash integrity, baseline laundering by a burst of releases, dependencies fetched around
the registry, a dripping upstream, malformed publish times and invisible characters."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

import chainwatch.gate.proxy as proxy_module
from chainwatch.analysis.metadata import parse_time
from chainwatch.gate.check import Checker
from chainwatch.gate.policy import Policy
from chainwatch.intel import BuiltinKnownBad
from chainwatch.model import Level
from chainwatch.output.escape import plain
from chainwatch.packument import baseline_choice_of, baseline_version
from chainwatch.registry import NpmConfig, RegistryClient
from chainwatch.registry.client import check_integrity
from chainwatch.scan import Scanner
from chainwatch.specs import off_registry
from tests.helpers import BENIGN_INDEX, clipper_source, make_tgz, manifest
from tests.hostile.fake_registry import FakeRegistry, make_proxy, serve, sri

NOW = datetime.now(UTC)


def ago(**delta: float) -> str:
    return (NOW - timedelta(**delta)).isoformat()


def client_for(reg: FakeRegistry, tmp_path: Path) -> RegistryClient:
    return RegistryClient(NpmConfig(registry=reg.base), tmp_path / "cache", backoff=0,
                          transport=httpx.MockTransport(reg))


# -- F1: two sha512 hashes, one for the scanner and one for the client -----------------------

def test_an_integrity_with_two_hashes_of_one_algorithm_pins_nothing(tmp_path: Path) -> None:
    benign = make_tgz({"package.json": manifest("tint", "1.0.1"), "index.js": BENIGN_INDEX})
    payload = make_tgz({"package.json": manifest("tint", "1.0.1"), "index.js": clipper_source()})
    both = f"{sri(benign)} {sri(payload)}"
    assert check_integrity(benign, sri(benign), None) is None
    assert "ambiguous" in (check_integrity(benign, both, None) or "")
    reg = FakeRegistry()
    reg.publish("tint", "1.0.0", {"index.js": BENIGN_INDEX}, published=ago(days=40))
    entry = reg.publish("tint", "1.0.1", data=benign, published=ago(days=40))
    entry["dist"]["integrity"] = both
    doc, tarball = serve(make_proxy(reg), ("GET", "/tint"), ("GET", "/tint/-/tint-1.0.1.tgz"))
    assert set(doc.json()["versions"]) == {"1.0.0"}  # hidden, never handed to a client
    assert tarball.status_code == 403 and "ambiguous" in tarball.text
    # the scanner refuses to vouch for such bytes either
    verdict = Scanner(client_for(reg, tmp_path), workers=1).scan("tint@1.0.1")
    assert "CW-INTEGRITY-MISMATCH" in {f.rule for f in verdict.findings}
    assert verdict.level is Level.MALICIOUS


# -- F2: a burst of two malicious releases; the second must not be judged against the first --

def test_a_release_is_judged_against_the_release_before_the_burst(tmp_path: Path) -> None:
    reg = FakeRegistry()
    reg.publish("tint", "1.0.0", {"index.js": BENIGN_INDEX}, published=ago(days=60))
    reg.publish("tint", "1.0.1", {"index.js": BENIGN_INDEX + clipper_source()},
                published=ago(hours=2))
    reg.publish("tint", "1.0.2", {"index.js": BENIGN_INDEX + clipper_source()},
                published=ago(hours=1))
    doc = reg.docs["tint"]
    assert baseline_version(doc, "1.0.2") == "1.0.0"
    assert baseline_version(doc, "1.0.1") == "1.0.0"
    verdict = Scanner(client_for(reg, tmp_path), workers=1).scan("tint@1.0.2")
    assert verdict.baseline is not None and verdict.baseline.version == "1.0.0"
    assert verdict.level is Level.MALICIOUS


def test_settled_releases_are_still_diffed_against_their_predecessor() -> None:
    reg = FakeRegistry()
    reg.publish("tint", "1.0.0", published=ago(days=60))
    reg.publish("tint", "1.0.1", published=ago(days=30))
    reg.publish("tint", "1.0.2", published=ago(days=1))
    assert baseline_version(reg.docs["tint"], "1.0.2") == "1.0.1"


# -- a baseline is not pushed down by versions published after the target (backports, a mirror's
#    rewritten times); a burst in either order still is ------------------------------------------

def times_doc(**published: str) -> dict[str, object]:
    """A packument of versions ``v1_0_0=…`` (underscores for dots) published at those times."""
    versions = {k[1:].replace("_", "."): {} for k in published}
    return {"name": "tint", "versions": versions,
            "time": {k[1:].replace("_", "."): t for k, t in published.items()}}


def test_backports_published_after_the_target_do_not_push_its_baseline_down() -> None:
    # a mirror's rewritten times (lodash@4.17.21 "vs 0.1.0"): every earlier version looks
    # published months after the target; the semver-previous one is the baseline, no note
    doc = times_doc(v0_1_0=ago(days=100), v4_17_19=ago(days=20), v4_17_20=ago(days=30),
                    v4_17_21=ago(days=300))
    assert baseline_choice_of(doc, "4.17.21") == ("4.17.20", None)
    # a backport on an older branch published after the newer line's release
    doc = times_doc(v1_0_0=ago(days=400), v1_0_1=ago(days=100), v1_1_0=ago(days=200))
    assert baseline_choice_of(doc, "1.1.0") == ("1.0.1", None)


def test_a_burst_is_still_passed_over_whatever_order_it_was_published_in(tmp_path: Path) -> None:
    # 1.0.2 then 1.0.1, both with the payload: 1.0.2 must not be judged against 1.0.1
    reg = FakeRegistry()
    reg.publish("tint", "1.0.0", {"index.js": BENIGN_INDEX}, published=ago(days=60))
    reg.publish("tint", "1.0.2", {"index.js": BENIGN_INDEX + clipper_source()},
                published=ago(hours=2))
    reg.publish("tint", "1.0.1", {"index.js": BENIGN_INDEX + clipper_source()},
                published=ago(hours=1))
    base, why = baseline_choice_of(reg.docs["tint"], "1.0.2")
    assert base == "1.0.0"
    assert why == ("judged against 1.0.0, not 1.0.1: 1.0.1 published within 3 days of 1.0.2 "
                   "(a burst)")
    notes: list[str] = []
    verdict = Scanner(client_for(reg, tmp_path), workers=1, notice=notes.append).scan("tint@1.0.2")
    assert verdict.baseline is not None and verdict.baseline.version == "1.0.0"
    assert verdict.level is Level.MALICIOUS
    assert notes == [f"tint@1.0.2: {why}"]


def test_a_later_release_too_young_to_have_settled_is_passed_over_with_a_note() -> None:
    # 1.0.1 published 7 days after 1.0.2, but only a day ago: not a baseline yet
    doc = times_doc(v1_0_0=ago(days=60), v1_0_1=ago(days=1), v1_0_2=ago(days=8))
    assert baseline_choice_of(doc, "1.0.2") == (
        "1.0.0", "judged against 1.0.0, not 1.0.1: 1.0.1 published after it, less than 3 days ago")


def test_a_burst_member_then_a_backport_gives_the_backport_with_a_note(tmp_path: Path) -> None:
    # depd@2.0.0 on the mirror: 1.1.2 a second before it (a burst), 1.1.1 months after it
    reg = FakeRegistry()
    reg.publish("tint", "1.0.0", published=ago(days=50))
    reg.publish("tint", "1.1.1", published=ago(days=100))
    reg.publish("tint", "1.1.2", published=ago(days=300, seconds=1))
    reg.publish("tint", "2.0.0", published=ago(days=300))
    notes: list[str] = []
    verdict = Scanner(client_for(reg, tmp_path), workers=1, notice=notes.append).scan("tint@2.0.0")
    assert verdict.baseline is not None and verdict.baseline.version == "1.1.1"
    assert notes == ["tint@2.0.0: judged against 1.1.1, not 1.1.2: 1.1.2 published within 3 days "
                     "of 2.0.0 (a burst)"]
    # a settled predecessor: no note
    notes.clear()
    Scanner(client_for(reg, tmp_path / "b"), workers=1, notice=notes.append).scan("tint@1.1.2")
    assert notes == []


# -- F3: a dependency npm fetches from a URL goes around the proxy ----------------------------

@pytest.mark.parametrize(("spec", "off"), [
    ("^1.2.0", False), ("latest", False), ("npm:other@^1", False), ("1.x || 2", False),
    ("http://foreign.test.invalid/evil-1.0.0.tgz", True), ("https://x.test.invalid/e.tgz", True),
    ("git+ssh://git@github.com/o/r.git", True), ("github:o/r", True), ("o/r#main", True),
    ("file:../evil", True), ("GIT://x.test.invalid/r", True)])
def test_specs_fetched_around_the_registry_are_recognised(spec: str, off: bool) -> None:
    assert (off_registry(spec) is not None) is off


def test_a_release_with_a_url_dependency_is_blocked_in_check_and_the_proxy(tmp_path: Path) -> None:
    reg = FakeRegistry()
    reg.publish("tint", "1.0.0", published=ago(days=40))
    reg.publish("tint", "1.0.1", published=ago(days=40),
                dependencies={"evil": "http://foreign.test.invalid/evil-1.0.0.tgz"})
    checker = Checker(Policy(), client_for(reg, tmp_path), BuiltinKnownBad())
    rules = {(d.action, d.rule) for d in checker.evaluate("tint", "1.0.1")}
    assert ("block", "remote-dependency") in rules
    assert not any(d.rule == "remote-dependency" for d in checker.evaluate("tint", "1.0.0"))
    (doc,) = serve(make_proxy(reg, Checker(Policy(), None, BuiltinKnownBad())), ("GET", "/tint"))
    assert set(doc.json()["versions"]) == {"1.0.0"}


# -- F5: an upstream that drips its packument --------------------------------------------------

class Drip(httpx.AsyncByteStream):
    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield b'{"name": "tint", '
        await asyncio.sleep(30)
        yield b"}"


def test_a_dripping_upstream_gets_a_504_not_a_hung_client(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(proxy_module, "PACKUMENT_DEADLINE", 0.5)
    reg = FakeRegistry()
    reg.raw["tint"] = lambda: httpx.Response(200, stream=Drip())
    (r,) = serve(make_proxy(reg), ("GET", "/tint"))
    assert r.status_code == 504


# -- F6: one malformed publish time must not break the whole package ---------------------------

@pytest.mark.parametrize("bad", [1, "2026-12-03", ["x"], "x" * 500, None])
def test_a_malformed_publish_time_breaks_only_itself(bad: object) -> None:
    reg = FakeRegistry()
    reg.publish("tint", "1.0.0", published=ago(days=40))
    reg.publish("tint", "1.0.1", published=ago(days=40))
    reg.docs["tint"]["time"]["1.0.1"] = bad
    (r,) = serve(make_proxy(reg), ("GET", "/tint"))
    assert r.status_code == 200 and "1.0.0" in r.json()["versions"]
    parsed = parse_time(bad)
    assert parsed is None or parsed.tzinfo is not None


# -- F7: characters that show as nothing -------------------------------------------------------

@pytest.mark.parametrize("hidden", ["\U000e0041", "\u00ad", "\u2060", "\ufe0f", "\U000e0100",
                                    "\u3164", "\u115f", "\u061c", "\u2063", "\u180e", "\ufeff"])
def test_invisible_characters_never_reach_the_terminal(hidden: str) -> None:
    assert hidden not in plain(f"bad{hidden}file.js")

