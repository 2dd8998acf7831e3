"""The read model: what the API and the pages show, read from the shared database.

Every list is newest first and paged by an opaque cursor; every value that a package author
controls is returned as plain data and escaped where it is rendered, never here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from sqlalchemy import Engine

T = TypeVar("T")

#: the largest page any list returns, whatever ``limit`` asks
MAX_LIMIT = 500


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    #: pass back as ``cursor`` for the next (older) page; None on the last page
    next_cursor: str | None


@dataclass(frozen=True)
class VerdictRow:
    key: str  # the verdict memory key (integrity, name@version or local:...)
    package: str
    version: str
    integrity: str | None
    level: str  # benign | suspicious | malicious
    score: int
    baseline: str | None
    top_rule: str | None
    top_message: str | None
    scanned_at: str  # ISO 8601 UTC


@dataclass(frozen=True)
class DeliveryRow:
    sink: str  # redacted sink id, never a secret URL
    status: str  # pending | sent | failed
    attempts: int
    sent_at: float | None
    last_error: str | None


@dataclass(frozen=True)
class AlertRow:
    id: str
    kind: str  # release | burst | scan-failed
    created_at: float
    payload: dict[str, Any]
    deliveries: list[DeliveryRow] = field(default_factory=list)


@dataclass(frozen=True)
class IncidentRow:
    id: str
    title: str
    level: str
    size: int
    first_published: str | None
    last_published: str | None
    hypothesis: str
    confidence: str
    updated_at: str


@dataclass(frozen=True)
class EnvironmentRow:
    pk: int
    label: str
    kind: str
    source: str
    recorded_at: str
    packages: int


@dataclass(frozen=True)
class ExposureRow:
    label: str
    kind: str
    source: str
    name: str
    version: str
    dev: bool
    path: str  # "a > b > c"
    first_seen: str
    last_seen: str


@dataclass(frozen=True)
class DecisionRow:
    pk: int
    time: str  # ISO 8601 UTC
    origin: str  # check | proxy
    package: str
    version: str | None
    action: str  # block | warn | allow
    rule: str
    reason: str
    source: str | None  # the lockfile or client it concerned, when known


@dataclass(frozen=True)
class Overview:
    counts: dict[str, int]  # verdicts by level, plus "alerts", "incidents", "environments", "blocked"
    #: one entry per day (oldest first): (YYYY-MM-DD, {level: count})
    verdicts_per_day: list[tuple[str, dict[str, int]]]
    #: one entry per day (oldest first): (YYYY-MM-DD, p50 seconds from publish to verdict or None)
    latency_per_day: list[tuple[str, float | None]]
    latest_alerts: list[AlertRow]
    latest_flagged: list[VerdictRow]


class ReadModel:
    """Reads for the API and the pages (SQLite or PostgreSQL through one engine)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def verdicts(self, *, package: str | None = None, level: str | None = None,
                 since: str | None = None, limit: int = 50,
                 cursor: str | None = None) -> Page[VerdictRow]:
        raise NotImplementedError

    def verdict(self, key: str) -> dict[str, Any] | None:
        """The full ``chainwatch.scan/1`` document stored under ``key``."""
        raise NotImplementedError

    def alerts(self, *, limit: int = 50, cursor: str | None = None) -> Page[AlertRow]:
        raise NotImplementedError

    def incidents(self) -> list[IncidentRow]:
        raise NotImplementedError

    def incident(self, incident_id: str) -> dict[str, Any] | None:
        """The ``chainwatch.brief/1`` document of one incident."""
        raise NotImplementedError

    def incident_html(self, incident_id: str) -> str | None:
        """The incident's brief rendered as the standalone HTML report."""
        raise NotImplementedError

    def exposure(self, spec: str) -> list[ExposureRow]:
        """Environments that hold ``name@version`` or ``name@range``; ValueError on a bad spec."""
        raise NotImplementedError

    def environments(self, *, limit: int = 50, cursor: str | None = None) -> Page[EnvironmentRow]:
        raise NotImplementedError

    def decisions(self, *, action: str | None = None, limit: int = 50,
                  cursor: str | None = None) -> Page[DecisionRow]:
        raise NotImplementedError

    def overview(self, days: int = 14) -> Overview:
        raise NotImplementedError
