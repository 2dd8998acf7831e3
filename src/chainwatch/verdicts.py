"""Verdict memory: every scan result, keyed by the tarball's integrity, so a release is analysed once.

The gate (``check`` and ``proxy``) asks here before scanning; the watcher stores what it scans.
A release without an integrity string is keyed by ``name@version``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Column, Engine, Float, Index, Integer, String, Table, Text, select
from sqlalchemy.exc import IntegrityError

from chainwatch.db import connect, metadata
from chainwatch.model import Level, Verdict

verdicts = Table(
    "verdicts", metadata,
    Column("key", String(256), primary_key=True),
    Column("package", String(256), nullable=False),
    Column("version", String(128), nullable=False),
    Column("integrity", String(256)),
    Column("level", String(16), nullable=False),
    Column("score", Integer, nullable=False),
    Column("baseline", String(128)),
    Column("explanation", Text, nullable=False, default=""),
    Column("top_rule", String(128)),
    Column("top_message", Text),
    Column("scanned_at", String(40), nullable=False),
    Column("elapsed_s", Float, nullable=False, default=0.0),
    Column("document", Text, nullable=False),
    Index("ix_verdicts_package_version", "package", "version"),
)


def verdict_key(name: str, version: str, integrity: str | None) -> str:
    return integrity or f"{name}@{version}"


@dataclass(frozen=True)
class StoredVerdict:
    package: str
    version: str
    integrity: str | None
    level: Level
    score: int
    baseline: str | None
    explanation: str
    top_rule: str | None
    top_message: str | None
    scanned_at: str
    document: dict[str, Any]

    @property
    def summary(self) -> str:
        top = f" — {self.top_rule}: {self.top_message}" if self.top_rule else ""
        return f"{self.level.value} (score {self.score}){top}"


def _stored(row: Any) -> StoredVerdict:
    return StoredVerdict(
        package=row["package"], version=row["version"], integrity=row["integrity"],
        level=Level(row["level"]), score=row["score"], baseline=row["baseline"],
        explanation=row["explanation"], top_rule=row["top_rule"],
        top_message=row["top_message"], scanned_at=row["scanned_at"],
        document=json.loads(row["document"]))


def _row(verdict: Verdict) -> dict[str, Any]:
    from chainwatch.output.jsonout import verdict_dict

    ref = verdict.target
    top = verdict.findings[0] if verdict.findings else (
        verdict.metadata_signals[0] if verdict.metadata_signals else None)
    return {
        "key": verdict_key(ref.name, ref.version, verdict.integrity),
        "package": ref.name, "version": ref.version, "integrity": verdict.integrity,
        "level": verdict.level.value, "score": verdict.score,
        "baseline": verdict.baseline.version if verdict.baseline else None,
        "explanation": verdict.explanation[:4000],
        "top_rule": top.rule if top else None,
        "top_message": top.message[:1000] if top else None,
        "scanned_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "elapsed_s": verdict.elapsed_s,
        "document": json.dumps(verdict_dict(verdict)),
    }


def stored_from_verdict(verdict: Verdict) -> StoredVerdict:
    """The stored form of a verdict, for callers without a database."""
    return _stored(_row(verdict))


class VerdictStore:
    def __init__(self, url: str | None = None, engine: Engine | None = None) -> None:
        self.engine = engine or connect(url)

    def get(self, name: str, version: str, integrity: str | None) -> StoredVerdict | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(verdicts).where(
                verdicts.c.key == verdict_key(name, version, integrity))).mappings().first()
        return _stored(row) if row is not None else None

    def put(self, verdict: Verdict) -> StoredVerdict:
        """Store a verdict (the first one stored for a key wins: a release is analysed once)."""
        values = _row(verdict)
        try:
            with self.engine.begin() as conn:
                conn.execute(verdicts.insert().values(**values))
        except IntegrityError:
            pass  # stored meanwhile by another worker; keep the first
        ref = verdict.target
        stored = self.get(ref.name, ref.version, verdict.integrity)
        assert stored is not None
        return stored

    def for_package(self, name: str) -> list[StoredVerdict]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(verdicts).where(verdicts.c.package == name)
                                .order_by(verdicts.c.scanned_at)).mappings().all()
        return [_stored(r) for r in rows]

    def recent(self, limit: int = 100, levels: tuple[Level, ...] = ()) -> list[StoredVerdict]:
        query = select(verdicts).order_by(verdicts.c.scanned_at.desc()).limit(limit)
        if levels:
            query = query.where(verdicts.c.level.in_([lv.value for lv in levels]))
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [_stored(r) for r in rows]
