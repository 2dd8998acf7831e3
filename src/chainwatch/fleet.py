"""Fleet memory: every recorded inventory, so "who held chalk 5.6.1, and when?" is one query.

``chainwatch inventory|exposure PATH --record LABEL`` stores each environment found with a
timestamp and the label (repo + commit, image digest, host); ``chainwatch exposure --query
chalk@5.6.1`` (or ``chalk@^5.6.0``) answers from the database.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import nodesemver
from sqlalchemy import (
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    Select,
    String,
    Table,
    Text,
    insert,
    select,
)

from chainwatch.db import connect, metadata
from chainwatch.model import Environment
from chainwatch.versions import parse

environments = Table(
    "fleet_environments", metadata,
    Column("pk", Integer, primary_key=True, autoincrement=True),
    Column("label", String(512), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("source", Text, nullable=False),
    Column("recorded_at", String(40), nullable=False),
    Index("ix_fleet_env_label", "label"),
)
holdings = Table(
    "fleet_packages", metadata,
    Column("pk", Integer, primary_key=True, autoincrement=True),
    Column("environment", Integer, ForeignKey("fleet_environments.pk", ondelete="CASCADE"),
           nullable=False),
    Column("name", String(256), nullable=False),
    Column("version", String(128), nullable=False),
    Column("dev", Boolean, nullable=False, default=False),
    Column("path", Text, nullable=False, default=""),
    Index("ix_fleet_pkg_name_version", "name", "version"),
    # an environment's packages (counts per environment, cascade deletes): bench/serve.py
    Index("ix_fleet_pkg_environment", "environment"),
)


@dataclass(frozen=True)
class Sighting:
    label: str
    kind: str
    source: str
    recorded_at: str
    name: str
    version: str
    dev: bool
    path: str


class Fleet:
    def __init__(self, url: str | None = None) -> None:
        self.engine = connect(url)

    def record(self, label: str, envs: Sequence[Environment], when: datetime | None = None) -> int:
        """Store each environment under ``label``; returns how many packages were recorded."""
        stamp = (when or datetime.now(UTC)).isoformat(timespec="seconds")
        count = 0
        with self.engine.begin() as conn:
            for env in envs:
                key = conn.execute(insert(environments).values(
                    label=label, kind=env.kind, source=env.source, recorded_at=stamp)
                ).inserted_primary_key
                assert key is not None
                pk = key[0]
                rows = [{"environment": pk, "name": p.name, "version": p.version, "dev": p.dev,
                         "path": " > ".join(p.paths[0]) if p.paths else ""}
                        for p in env.packages if p.exact]
                if rows:
                    conn.execute(insert(holdings), rows)
                count += len(rows)
        return count

    def record_upload(self, label: str, filename: str, body: bytes) -> int:
        """Record an environment sent over the API: a lockfile (named by ``filename``) or a
        ``chainwatch.inventory/1`` document, parsed in memory with the inventory's limits; returns
        how many packages were recorded; UsageError on anything it cannot read."""
        from chainwatch.inventory.upload import check_label, parse_upload

        label = check_label(label)
        return self.record(label, parse_upload(filename, body))

    def environment_count(self) -> int:
        """How many distinct labels (recorded environments) fleet memory holds."""
        from sqlalchemy import func

        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count(func.distinct(environments.c.label))))
                       .scalar_one())

    def query(self, spec: str) -> list[Sighting]:
        """Environments that held ``name@version`` or ``name@range`` (newest first)."""
        name, wanted, exact = parse_spec(spec)
        with self.engine.connect() as conn:
            rows = conn.execute(held_query(name, wanted, exact)
                                .order_by(environments.c.recorded_at.desc())).mappings().all()
        return [Sighting(r["label"], r["kind"], r["source"], r["recorded_at"], r["name"],
                         r["version"], r["dev"], r["path"])
                for r in rows if exact or nodesemver.satisfies(r["version"], wanted, False)]


def parse_spec(spec: str) -> tuple[str, str, bool]:
    """``name@version`` or ``name@range`` (or a bare name: any version) as (name, wanted,
    exact); ValueError, with the text clipped, for a bad name or range."""
    from chainwatch.names import name_problem

    if len(spec) > 512:
        raise ValueError("the package spec is longer than 512 characters")
    at = spec.rfind("@")
    name, wanted = (spec, "*") if at <= 0 else (spec[:at], spec[at + 1:])
    if (problem := name_problem(name)) is not None:
        raise ValueError(f"invalid package name {name[:80]!r}: {problem}")
    exact = parse(wanted) is not None
    if not exact and nodesemver.valid_range(wanted, False) is None:
        raise ValueError(f"not a version or range: {wanted[:80]!r}")
    return name, wanted, exact


def held_query(name: str, wanted: str, exact: bool) -> Select[Any]:
    """Every recorded holding of ``name`` (of version ``wanted`` when exact; a range is
    matched by the caller), with its environment's label, kind, source and time."""
    stmt = (select(holdings.c.name, holdings.c.version, holdings.c.dev, holdings.c.path,
                   environments.c.label, environments.c.kind, environments.c.source,
                   environments.c.recorded_at)
            .join(environments, environments.c.pk == holdings.c.environment)
            .where(holdings.c.name == name))
    return stmt.where(holdings.c.version == wanted) if exact else stmt
