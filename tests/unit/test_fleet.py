from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from chainwatch.fleet import Fleet
from chainwatch.model import Environment, InstalledPackage


def env(source: str, *pkgs: tuple[str, str]) -> Environment:
    return Environment(source, "package-lock", source, tuple(
        InstalledPackage(n, v, paths=(("app", n),)) for n, v in pkgs))


def test_record_and_query(tmp_path: Path) -> None:
    fleet = Fleet(f"sqlite:///{tmp_path / 'f.db'}")
    fleet.record("web@abc123", [env("web/package-lock.json", ("chalk", "5.6.1"), ("ms", "2.1.3"))],
                 datetime(2025, 9, 8, 14, 0, tzinfo=UTC))
    fleet.record("api@def456", [env("api/package-lock.json", ("chalk", "5.6.2"))],
                 datetime(2025, 9, 9, 9, 0, tzinfo=UTC))
    exact = fleet.query("chalk@5.6.1")
    assert [(s.label, s.recorded_at, s.path) for s in exact] == [
        ("web@abc123", "2025-09-08T14:00:00+00:00", "app > chalk")]
    ranged = fleet.query("chalk@^5.6.0")
    assert [s.label for s in ranged] == ["api@def456", "web@abc123"]  # newest first
    assert fleet.query("chalk@>=6") == [] and fleet.query("left-pad@1.0.0") == []
    with pytest.raises(ValueError):
        fleet.query("chalk@not a range")
