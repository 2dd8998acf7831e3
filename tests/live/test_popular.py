"""Popular packages' latest releases stay benign or at most suspicious (live registry)."""

from __future__ import annotations

import pytest

from chainwatch.model import Level
from chainwatch.registry import RegistryClient
from chainwatch.scan import Scanner

pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
def scanner() -> Scanner:
    return Scanner(RegistryClient())


@pytest.mark.parametrize("name", ["chalk", "debug", "lodash", "react", "express", "axios",
                                  "esbuild", "ethers", "next"])
def test_latest_is_not_malicious(scanner: Scanner, name: str) -> None:
    v = scanner.scan(name)
    assert v.level is not Level.MALICIOUS, [f.rule for f in v.findings[:5]]
