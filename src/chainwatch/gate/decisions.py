"""What ``check`` and the proxy blocked or warned, kept in the shared database.

The proxy also keeps its last decisions in memory for ``/-/chainwatch/decisions``; this log is
what survives a restart and what ``chainwatch serve`` shows.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Column, Engine, Index, Integer, String, Table, Text

from chainwatch.db import metadata

#: one row per decision that blocked or warned (allow decisions are not kept)
decisions = Table(
    "gate_decisions", metadata,
    Column("pk", Integer, primary_key=True, autoincrement=True),
    Column("time", String(40), nullable=False),  # ISO 8601 UTC
    Column("origin", String(16), nullable=False),  # check | proxy
    Column("package", String(256), nullable=False),
    Column("version", String(128)),
    Column("action", String(16), nullable=False),  # block | warn | allow
    Column("rule", String(128), nullable=False),
    Column("reason", Text, nullable=False),
    Column("source", Text),
    Index("ix_gate_decisions_time", "time"),
)


@dataclass(frozen=True)
class Recorded:
    origin: str  # check | proxy
    package: str
    version: str | None
    action: str  # block | warn | allow
    rule: str
    reason: str
    source: str | None = None  # the lockfile or client it concerned, when known


class DecisionLog:
    """Append-only; writes never fail the caller's decision (a write error is logged)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def record(self, entries: list[Recorded]) -> None:
        raise NotImplementedError
