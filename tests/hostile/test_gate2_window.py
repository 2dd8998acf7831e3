"""Rules about fresh compromises judge only releases inside the window (issue 12 B, item 4).

Before: babel's real yarn.lock was blocked for ``fsevents@1.2.13`` (published 2020) because its
install script was new since 1.2.12: a years-old release judged as if it had just appeared. An
attacker gains nothing from that, but every team learns to ignore the gate.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from chainwatch.gate.check import Checker
from chainwatch.gate.policy import Policy
from chainwatch.intel import BuiltinKnownBad
from chainwatch.registry import NpmConfig, RegistryClient
from tests.hostile.fake_registry import FakeRegistry

NOW = datetime.now(UTC)


def ago(days: float) -> str:
    return (NOW - timedelta(days=days)).isoformat()


def judge(tmp_path: Path, new_release_age_days: float, policy: Policy | None = None,
          published: bool = True) -> dict[str, str]:
    reg = FakeRegistry()
    reg.publish("native-watch", "1.2.12", published=ago(new_release_age_days + 200),
                _npmUser={"name": "alice"})
    entry = reg.publish("native-watch", "1.2.13", published=ago(new_release_age_days),
                        scripts={"install": "node-gyp rebuild"}, _npmUser={"name": "mallory"})
    assert entry["scripts"]
    if not published:
        del reg.docs["native-watch"]["time"]["1.2.13"]
    client = RegistryClient(NpmConfig(registry=reg.base), tmp_path / "cache", backoff=0,
                            transport=httpx.MockTransport(reg))
    with client:
        checker = Checker(policy or Policy(), client, BuiltinKnownBad())
        return {d.rule: d.action for d in checker.evaluate("native-watch", "1.2.13")}


def test_an_old_release_is_not_judged_by_fresh_compromise_rules(tmp_path: Path) -> None:
    rules = judge(tmp_path, 5 * 365)  # like fsevents@1.2.13, five years old
    assert "new-install-script" not in rules and "publisher-change" not in rules
    assert rules.get("install-scripts") == "warn"  # it still runs a script: said plainly


def test_a_fresh_release_still_is(tmp_path: Path) -> None:
    rules = judge(tmp_path, 10)
    assert rules["new-install-script"] == "block" and rules["publisher-change"] == "warn"


def test_the_window_is_the_policys_scan_window(tmp_path: Path) -> None:
    wide = Policy(scan_window=timedelta(days=400))
    assert judge(tmp_path, 300, wide)["new-install-script"] == "block"
    assert "new-install-script" not in judge(tmp_path, 300)


@pytest.mark.parametrize("days", [10, 5 * 365])
def test_an_unknown_publish_time_counts_as_fresh(tmp_path: Path, days: float) -> None:
    assert judge(tmp_path, days, published=False)["new-install-script"] == "block"


def test_an_old_known_bad_version_is_still_blocked(tmp_path: Path) -> None:
    reg = FakeRegistry()
    reg.publish("debug", "4.4.1", published=ago(400))
    reg.publish("debug", "4.4.2", published=ago(300))
    client = RegistryClient(NpmConfig(registry=reg.base), tmp_path / "cache", backoff=0,
                            transport=httpx.MockTransport(reg))
    with client:
        rules = {d.rule: d.action for d in
                 Checker(Policy(), client, BuiltinKnownBad()).evaluate("debug", "4.4.2")}
    assert rules["known-bad"] == "block"
