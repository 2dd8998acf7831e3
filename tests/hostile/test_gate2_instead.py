""""Use instead" satisfies what the dependents allow (issue 12 B, item 7).

Before: express asks for ``encodeurl@^2``; with 2.0.1 blocked, the gate said "use 3.0.0", a
version express does not accept: following the advice breaks the install or, with an override,
express itself. A team that learns the advice is wrong stops reading it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from chainwatch.gate.check import Checker, Placed
from chainwatch.gate.policy import Policy
from chainwatch.intel import BuiltinKnownBad
from chainwatch.model import Environment, InstalledPackage
from chainwatch.output.check import check_json
from chainwatch.registry import NpmConfig, RegistryClient
from tests.hostile.fake_registry import FakeRegistry

FRESH = (datetime.now(UTC) - timedelta(hours=1)).isoformat()  # blocked by min-age


def world(tmp_path: Path, versions: list[str], express_wants: str = "^2.0.0"
          ) -> tuple[FakeRegistry, RegistryClient]:
    reg = FakeRegistry()
    for v in versions:
        reg.publish("encodeurl", v)
    reg.publish("encodeurl", "2.0.1", published=FRESH)
    reg.docs["encodeurl"]["dist-tags"]["latest"] = max([*versions, "2.0.1"])
    reg.publish("express", "4.0.0", dependencies={"encodeurl": express_wants})
    return reg, RegistryClient(NpmConfig(registry=reg.base), tmp_path / "cache", backoff=0,
                               transport=httpx.MockTransport(reg))


def blocked(tmp_path: Path, reg: FakeRegistry, client: RegistryClient,
            env: Environment) -> Placed:
    with client:
        placed = Checker(Policy(), client, BuiltinKnownBad()).check([env])
    (block,) = [p for p in placed if p.decision.name == "encodeurl"
                and p.decision.action == "block"]
    return block


def transitive(tmp_path: Path) -> Environment:
    return Environment("lock", "package-lock", str(tmp_path / "package-lock.json"), (
        InstalledPackage("express", "4.0.0", paths=(("app", "express"),)),
        InstalledPackage("encodeurl", "2.0.1", paths=(("app", "express", "encodeurl"),))))


def test_the_suggestion_satisfies_the_parents_range(tmp_path: Path) -> None:
    reg, client = world(tmp_path, ["1.0.2", "2.0.0", "3.0.0"])
    block = blocked(tmp_path, reg, client, transitive(tmp_path))
    assert block.decision.rule == "min-age"
    assert block.decision.suggestion == "2.0.0"  # not 3.0.0: express wants ^2


def test_no_allowed_version_names_the_parent_that_must_change(tmp_path: Path) -> None:
    reg, client = world(tmp_path, ["1.0.2", "3.0.0"])
    block = blocked(tmp_path, reg, client, transitive(tmp_path))
    assert block.decision.suggestion is None
    assert block.decision.note and "express@4.0.0 (^2.0.0)" in block.decision.note
    assert "must change" in block.decision.note
    row = json.loads(check_json([block], 1))["decisions"][0]
    assert row["suggestion"] is None and "express@4.0.0" in row["note"]


def test_a_direct_dependency_follows_the_projects_package_json(tmp_path: Path) -> None:
    reg, client = world(tmp_path, ["1.0.2", "2.0.0", "3.0.0"])
    (tmp_path / "package.json").write_text(json.dumps({"dependencies": {"encodeurl": "~2.0.0"}}))
    env = Environment("lock", "package-lock", str(tmp_path / "package-lock.json"), (
        InstalledPackage("encodeurl", "2.0.1", paths=(("app", "encodeurl"),)),))
    assert blocked(tmp_path, reg, client, env).decision.suggestion == "2.0.0"


def test_an_unknown_range_keeps_the_suggestion_and_says_a_major_changes(tmp_path: Path) -> None:
    reg, client = world(tmp_path, ["1.0.2", "3.0.0"])
    env = Environment("nm", "node_modules", str(tmp_path / "node_modules"), (
        InstalledPackage("encodeurl", "2.0.1", paths=(("app", "encodeurl"),)),))
    block = blocked(tmp_path, reg, client, env)
    assert block.decision.suggestion == "3.0.0"
    assert block.decision.note and "major change" in block.decision.note


def test_a_copy_of_the_parent_that_wants_another_copy_is_not_asked(tmp_path: Path) -> None:
    """A first-day user: lru-cache@11.5.4 blocked, two copies of path-scurry installed; the
    advice said path-scurry@1.11.1 (^10.2.0) must change, but that copy depends on another
    lru-cache; the one that pulled 11.5.4 in (path-scurry@2, ^11) accepts the older 11.x."""
    reg = FakeRegistry()
    for v in ("10.4.3", "11.5.3"):
        reg.publish("lru-cache", v)
    reg.publish("lru-cache", "11.5.4", published=FRESH)
    reg.docs["lru-cache"]["dist-tags"]["latest"] = "11.5.4"
    reg.publish("path-scurry", "1.11.1", dependencies={"lru-cache": "^10.2.0"})
    reg.publish("path-scurry", "2.0.2", dependencies={"lru-cache": "^11.0.0"})
    client = RegistryClient(NpmConfig(registry=reg.base), tmp_path / "cache", backoff=0,
                            transport=httpx.MockTransport(reg))
    env = Environment("lock", "package-lock", str(tmp_path / "package-lock.json"), (
        InstalledPackage("path-scurry", "1.11.1", paths=(("app", "glob", "path-scurry"),)),
        InstalledPackage("path-scurry", "2.0.2", paths=(("app", "path-scurry"),)),
        InstalledPackage("lru-cache", "10.4.3", paths=(("app", "glob", "path-scurry",
                                                         "lru-cache"),)),
        InstalledPackage("lru-cache", "11.5.4", paths=(("app", "path-scurry", "lru-cache"),))))
    with client:
        placed = Checker(Policy(), client, BuiltinKnownBad()).check([env])
    (block,) = [p for p in placed if p.decision.name == "lru-cache"
                and p.decision.action == "block"]
    assert block.decision.suggestion == "11.5.3", block.decision.note
    assert "path-scurry@1.11.1" not in (block.decision.note or "")


def test_a_version_without_a_publish_time_is_blocked_by_min_age(tmp_path: Path) -> None:
    """An attacker's review: a registry (or mirror) that leaves out `time` made `check` pass a
    version whose age it could not know; the proxy already hid it."""
    reg = FakeRegistry()
    reg.publish("timeless", "1.0.0")
    del reg.docs["timeless"]["time"]
    client = RegistryClient(NpmConfig(registry=reg.base), tmp_path / "cache", backoff=0,
                            transport=httpx.MockTransport(reg))
    env = Environment("lock", "package-lock", str(tmp_path / "package-lock.json"), (
        InstalledPackage("timeless", "1.0.0", paths=(("app", "timeless"),)),))
    with client:
        placed = Checker(Policy(), client, BuiltinKnownBad()).check([env])
    assert [(p.decision.action, p.decision.rule) for p in placed] == [("block", "min-age")]
    assert "no publish time" in placed[0].decision.reason
