"""What ``check`` and the proxy blocked or warned, kept in the shared database.

The proxy also keeps its last decisions in memory for ``/-/chainwatch/decisions``; this log is
what survives a restart and what ``chainwatch serve`` shows.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine


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
