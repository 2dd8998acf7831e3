"""An index added to a table after a database was made is made when the database is opened."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from chainwatch.db import connect


def names(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}


def test_indexes_missing_from_an_older_database_are_made(tmp_path: Path) -> None:
    path = tmp_path / "cw.db"
    connect(f"sqlite:///{path}").dispose()
    made = names(path)
    assert {"ix_fleet_pkg_environment", "ix_verdicts_scanned_at",
            "ux_gate_decisions_once"} <= made
    with sqlite3.connect(path) as conn:  # as a database made before they existed
        conn.execute("DROP INDEX ix_fleet_pkg_environment")
        conn.execute("DROP INDEX ix_verdicts_scanned_at")
    assert "ix_fleet_pkg_environment" not in names(path)
    connect(f"sqlite:///{path}").dispose()
    assert names(path) == made
