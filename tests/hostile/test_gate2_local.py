"""``file:``, ``link:``, ``workspace:`` and ``portal:`` packages are never looked up in the
registry (issue 12 B, item 6).

Before: vite's pnpm lockfile got 109 "registry metadata unavailable" warnings for its own
playground packages, and each was a request to the public registry naming a private package
(a leak of internal names, and a dependency-confusion lookup an attacker could answer).
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from chainwatch.gate.check import Checker
from chainwatch.gate.environments import is_local
from chainwatch.gate.policy import Policy
from chainwatch.intel import BuiltinKnownBad
from chainwatch.model import Environment, InstalledPackage
from chainwatch.registry import NpmConfig, RegistryClient
from tests.hostile.fake_registry import FakeRegistry

LOCAL = [
    InstalledPackage("playground-a", "link:../playground/a"),
    InstalledPackage("my-ws", "workspace:packages/my-ws"),
    InstalledPackage("portal-pkg", "portal:../portal"),
    InstalledPackage("vendored", "file:vendor/vendored-1.0.0.tgz",
                     resolved="file:vendor/vendored-1.0.0.tgz"),
    InstalledPackage("npm-vendored", "1.0.0", resolved="file:vendor/npm-vendored-1.0.0.tgz"),
]


@pytest.mark.parametrize("package", LOCAL, ids=lambda p: p.name)
def test_local_packages_are_recognised(package: InstalledPackage) -> None:
    assert is_local(package)


def test_registry_packages_are_not_local() -> None:
    assert not is_local(InstalledPackage("ms", "2.1.3",
                                         resolved="https://registry.npmjs.org/ms/-/ms-2.1.3.tgz"))


def test_local_packages_cost_no_registry_request_and_no_warning(tmp_path: Path) -> None:
    reg = FakeRegistry()
    reg.publish("ms", "2.1.3")
    # a registry that *would* answer for the private names (dependency confusion)
    for package in LOCAL:
        reg.publish(package.name, "99.0.0", scripts={"postinstall": "node x.js"})
    client = RegistryClient(NpmConfig(registry=reg.base), tmp_path / "cache", backoff=0,
                            transport=httpx.MockTransport(reg))
    env = Environment("lock", "pnpm", "app/pnpm-lock.yaml",
                      (*LOCAL, InstalledPackage("ms", "2.1.3")))
    with client:
        placed = Checker(Policy(), client, BuiltinKnownBad()).check([env])
    asked = {seen.path for seen in reg.log}
    assert asked == {"/ms"}
    assert not [p for p in placed if p.decision.name != "ms"]


def test_a_vendored_known_bad_tarball_is_still_blocked_without_asking(tmp_path: Path) -> None:
    reg = FakeRegistry()
    client = RegistryClient(NpmConfig(registry=reg.base), tmp_path / "cache", backoff=0,
                            transport=httpx.MockTransport(reg))
    env = Environment("lock", "package-lock", "app/package-lock.json", (
        InstalledPackage("debug", "4.4.2", resolved="file:vendor/debug-4.4.2.tgz"),))
    with client:
        placed = Checker(Policy(), client, BuiltinKnownBad()).check([env])
    assert not reg.log
    assert [(p.decision.rule, p.decision.action) for p in placed] == [("known-bad", "block")]
