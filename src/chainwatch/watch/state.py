"""The watcher's durable state: packages, versions seen, alerts and their deliveries.

Every step commits before the next begins, so a restart (even after ``kill -9``) resumes where it
stopped: a version is queued in the same transaction that records it as seen, its alert and the
deliveries owed are written in the same transaction that marks it scanned, and a delivery is
marked sent right after the sink accepted it (alerts carry their id as an idempotency key for the
one window that cannot be closed: a crash between a sink's answer and that commit).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Engine,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    insert,
    inspect,
    or_,
    select,
    text,
    update,
)

from chainwatch.db import metadata
from chainwatch.watch.redact import sink_id

packages = Table(
    "watch_packages", metadata,
    Column("name", String(256), primary_key=True),
    Column("hot", Boolean, nullable=False, default=False),
    Column("baselined", Boolean, nullable=False, default=False),
    Column("next_due", Float, nullable=False, default=0.0),
    Column("checked_at", Float),
    Column("failures", Integer, nullable=False, default=0),
    Column("last_error", Text),
    Index("ix_watch_packages_due", "next_due"),
)
versions = Table(
    "watch_versions", metadata,
    Column("pk", Integer, primary_key=True, autoincrement=True),
    Column("name", String(256), nullable=False),
    Column("version", String(128), nullable=False),
    Column("published", String(40)),
    Column("publisher", String(256)),
    Column("seen_at", Float, nullable=False),
    # baseline (there before watching began) | queued | done | failed
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("level", String(16)),
    Column("scanned_at", Float),
    Column("last_error", Text),
    #: a failed scan is retried no earlier than this (exponential backoff)
    Column("next_attempt", Float, nullable=False, default=0.0, server_default="0"),
    UniqueConstraint("name", "version", name="uq_watch_versions"),
    Index("ix_watch_versions_status", "status"),
)
alerts = Table(
    "watch_alerts", metadata,
    Column("id", String(400), primary_key=True),
    Column("kind", String(16), nullable=False),  # release | burst | scan-failed
    Column("created_at", Float, nullable=False),
    Column("payload", Text, nullable=False),
)
deliveries = Table(
    "watch_deliveries", metadata,
    Column("pk", Integer, primary_key=True, autoincrement=True),
    Column("alert_id", String(400), ForeignKey("watch_alerts.id", ondelete="CASCADE"),
           nullable=False),
    Column("sink", String(128), nullable=False),
    Column("status", String(16), nullable=False),  # pending | sent | failed
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt", Float, nullable=False, default=0.0),
    Column("sent_at", Float),
    Column("last_error", Text),
    UniqueConstraint("alert_id", "sink", name="uq_watch_delivery"),
    Index("ix_watch_deliveries_status", "status", "next_attempt"),
)
checkpoints = Table(
    "watch_checkpoints", metadata,
    Column("key", String(256), primary_key=True),
    Column("value", Text, nullable=False),
)


@dataclass(frozen=True)
class Queued:
    pk: int
    name: str
    version: str
    published: str | None
    publisher: str | None
    seen_at: float
    attempts: int


@dataclass(frozen=True)
class Delivery:
    pk: int
    alert_id: str
    sink: str
    attempts: int
    payload: dict[str, Any]


def _migrate(engine: Engine) -> None:
    """Columns added after a database was created (``create_all`` adds tables, not columns)."""
    have = {c["name"] for c in inspect(engine).get_columns(versions.name)}
    if "next_attempt" not in have:
        with engine.begin() as conn:
            conn.execute(text(f"ALTER TABLE {versions.name} "
                              "ADD COLUMN next_attempt FLOAT NOT NULL DEFAULT 0"))
    _redact_legacy_sinks(engine)


def _redact_legacy_sinks(engine: Engine) -> None:
    """Deliveries written before sinks had ids named webhooks by their URL (a secret): store
    the id instead, so what is owed is still delivered and the URL is gone from the table."""
    legacy = or_(deliveries.c.sink.like("webhook:%://%"), deliveries.c.sink.like("slack:%://%"))
    with engine.begin() as conn:
        rows = conn.execute(select(deliveries.c.pk, deliveries.c.sink, deliveries.c.last_error)
                            .where(legacy)).all()
        for pk, sink, error in rows:
            kind, _, url = sink.partition(":")
            ident = sink_id(kind, url)
            conn.execute(update(deliveries).where(deliveries.c.pk == pk).values(
                sink=ident, last_error=error.replace(url, ident) if error else error))


class WatchState:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        _migrate(engine)

    # -- the watchlist ---------------------------------------------------------------------
    def add_packages(self, names: list[str], hot: set[str]) -> int:
        """Add names not yet watched (due at once); returns how many were new."""
        with self.engine.begin() as conn:
            known = set(conn.execute(select(packages.c.name)).scalars())
            fresh = [{"name": n, "hot": n in hot, "baselined": False, "next_due": 0.0,
                      "failures": 0} for n in dict.fromkeys(names) if n not in known]
            if fresh:
                conn.execute(insert(packages), fresh)
        return len(fresh)

    def watched(self) -> list[str]:
        """The names on the watchlist this database holds (from earlier runs)."""
        with self.engine.connect() as conn:
            return sorted(conn.execute(select(packages.c.name)).scalars())

    def due(self, now: float, limit: int) -> list[tuple[str, bool, bool]]:
        """(name, hot, baselined) of packages whose time has come, most overdue first."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(packages.c.name, packages.c.hot, packages.c.baselined)
                                .where(packages.c.next_due <= now)
                                .order_by(packages.c.next_due).limit(limit)).all()
        return [(r[0], bool(r[1]), bool(r[2])) for r in rows]

    def mark_due(self, names: list[str]) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(packages).where(packages.c.name.in_(names)).values(next_due=0.0))

    def known_versions(self, name: str) -> set[str]:
        with self.engine.connect() as conn:
            return set(conn.execute(select(versions.c.version)
                                    .where(versions.c.name == name)).scalars())

    def record_poll(self, name: str, new: list[dict[str, Any]], baseline: bool, now: float,
                    next_due: float) -> None:
        """New versions (queued, or kept as baseline) and the package's next turn, together."""
        with self.engine.begin() as conn:
            if new:
                conn.execute(insert(versions), [
                    {**row, "name": name, "seen_at": now, "attempts": 0,
                     "status": row.get("status") or ("baseline" if baseline else "queued")}
                    for row in new])
            conn.execute(update(packages).where(packages.c.name == name).values(
                baselined=True, checked_at=now, next_due=next_due, failures=0,
                last_error=None))

    def status_of(self, name: str) -> dict[str, Any]:
        with self.engine.connect() as conn:
            row = conn.execute(select(packages).where(packages.c.name == name)).mappings().first()
        return dict(row) if row is not None else {}

    def record_poll_failure(self, name: str, error: str, next_due: float) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(packages).where(packages.c.name == name).values(
                failures=packages.c.failures + 1, last_error=error[:1000], next_due=next_due))

    # -- the scan queue ---------------------------------------------------------------------
    def queued(self, limit: int = 10, now: float | None = None) -> list[Queued]:
        """Versions waiting to be scanned, oldest first; with ``now``, only those whose
        backoff after a failed scan has run out (a poison pill never holds up the rest)."""
        query = select(versions).where(versions.c.status == "queued")
        if now is not None:
            query = query.where(versions.c.next_attempt <= now)
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(versions.c.seen_at, versions.c.pk)
                                .limit(limit)).mappings().all()
        return [Queued(r["pk"], r["name"], r["version"], r["published"], r["publisher"],
                       r["seen_at"], r["attempts"]) for r in rows]

    def waiting(self) -> dict[str, int]:
        """How many versions of each package wait to be scanned."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(versions.c.name, func.count())
                                .where(versions.c.status == "queued")
                                .group_by(versions.c.name)).all()
        return {r[0]: int(r[1]) for r in rows}

    def finish(self, item: Queued, level: str, alert: tuple[str, str, dict[str, Any]] | None,
               sinks: list[str], now: float) -> bool:
        """Mark a version scanned and, in the same transaction, write its alert and the
        deliveries owed. Returns False when the alert existed already (never sent twice)."""
        created = False
        with self.engine.begin() as conn:
            conn.execute(update(versions).where(versions.c.pk == item.pk).values(
                status="done", level=level, scanned_at=now, last_error=None))
            if alert is not None:
                created = self._alert(conn, *alert, sinks, now)
        return created

    def _alert(self, conn: Any, alert_id: str, kind: str, payload: dict[str, Any],
               sinks: list[str], now: float) -> bool:
        exists = conn.execute(select(alerts.c.id).where(alerts.c.id == alert_id)).first()
        if exists is not None:
            return False
        conn.execute(insert(alerts).values(id=alert_id, kind=kind, created_at=now,
                                           payload=json.dumps(payload)))
        if sinks:
            conn.execute(insert(deliveries), [
                {"alert_id": alert_id, "sink": s, "status": "pending", "attempts": 0,
                 "next_attempt": now} for s in sinks])
        return True

    def add_alert(self, alert_id: str, kind: str, payload: dict[str, Any], sinks: list[str],
                  now: float) -> bool:
        with self.engine.begin() as conn:
            return self._alert(conn, alert_id, kind, payload, sinks, now)

    def claim(self, item: Queued, next_attempt: float) -> Queued:
        """Count an attempt before it begins, with the time of the next one should this one
        never finish; returns the item with its new attempt count."""
        with self.engine.begin() as conn:
            conn.execute(update(versions).where(versions.c.pk == item.pk).values(
                attempts=item.attempts + 1, next_attempt=next_attempt))
        return replace(item, attempts=item.attempts + 1)

    def scan_failed(self, item: Queued, error: str, next_attempt: float | None,
                    alert: tuple[str, str, dict[str, Any]] | None = None,
                    sinks: list[str] | None = None, now: float = 0.0) -> bool:
        """Record a failed scan against its version: its attempts, the error, and either
        the time of the next try or (``next_attempt`` None) that the watcher gave up, with the
        ``scan-failed`` alert and its deliveries in the same transaction. True when that alert
        was created."""
        created = False
        with self.engine.begin() as conn:
            conn.execute(update(versions).where(versions.c.pk == item.pk).values(
                attempts=item.attempts, last_error=error[:1000],
                status="failed" if next_attempt is None else "queued",
                next_attempt=next_attempt if next_attempt is not None else 0.0))
            if alert is not None:
                created = self._alert(conn, *alert, sinks or [], now)
        return created

    def scan_failures(self, limit: int = 20) -> list[dict[str, Any]]:
        """Versions whose scan failed: given up on, or waiting for another try."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(versions.c.name, versions.c.version, versions.c.status,
                       versions.c.attempts, versions.c.next_attempt, versions.c.last_error)
                .where(versions.c.last_error.is_not(None))
                .where(versions.c.status.in_(("queued", "failed")))
                .order_by(versions.c.seen_at.desc(), versions.c.pk.desc())
                .limit(limit)).mappings().all()
        return [dict(r) for r in rows]

    def scan_failure_counts(self) -> tuple[int, int]:
        """(versions waiting to retry a failed scan, versions given up on)."""
        with self.engine.connect() as conn:
            rows: dict[str, int] = dict(conn.execute(
                select(versions.c.status, func.count())
                .where(versions.c.last_error.is_not(None))
                .where(versions.c.status.in_(("queued", "failed")))
                .group_by(versions.c.status)).all())
        return int(rows.get("queued", 0)), int(rows.get("failed", 0))

    def recent_releases(self, since: float) -> list[dict[str, Any]]:
        """Versions seen since ``since`` (not baseline), with their publisher and verdict."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(versions).where(versions.c.seen_at >= since)
                                .where(versions.c.status != "baseline")).mappings().all()
        return [dict(r) for r in rows]

    # -- deliveries -------------------------------------------------------------------------
    def pending(self, now: float, limit: int = 50) -> list[Delivery]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(deliveries, alerts.c.payload)
                .join(alerts, alerts.c.id == deliveries.c.alert_id)
                .where(deliveries.c.status == "pending")
                .where(deliveries.c.next_attempt <= now)
                .order_by(deliveries.c.next_attempt).limit(limit)).mappings().all()
        return [Delivery(r["pk"], r["alert_id"], r["sink"], r["attempts"],
                         json.loads(r["payload"])) for r in rows]

    def delivered(self, delivery: Delivery, now: float) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(deliveries).where(deliveries.c.pk == delivery.pk).values(
                status="sent", sent_at=now, attempts=delivery.attempts + 1, last_error=None))

    def delivery_failed(self, delivery: Delivery, error: str, next_attempt: float | None) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(deliveries).where(deliveries.c.pk == delivery.pk).values(
                attempts=delivery.attempts + 1, last_error=error[:1000],
                status="failed" if next_attempt is None else "pending",
                next_attempt=next_attempt or 0.0))

    # -- checkpoints and status ---------------------------------------------------------------
    def checkpoint(self, key: str) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(select(checkpoints.c.value)
                                .where(checkpoints.c.key == key)).scalar_one_or_none()

    def set_checkpoint(self, key: str, value: str) -> None:
        with self.engine.begin() as conn:
            done = conn.execute(update(checkpoints).where(checkpoints.c.key == key)
                                .values(value=value))
            if done.rowcount == 0:
                conn.execute(insert(checkpoints).values(key=key, value=value))

    def status(self, now: float | None = None) -> dict[str, Any]:
        now = now if now is not None else time.time()
        with self.engine.connect() as conn:
            def count(table: Table, *where: Any) -> int:
                return int(conn.execute(select(func.count()).select_from(table)
                                        .where(*where)).scalar_one())

            last_poll = conn.execute(select(func.max(packages.c.checked_at))).scalar_one()
            recent = conn.execute(select(alerts.c.id, alerts.c.kind, alerts.c.created_at)
                                  .order_by(alerts.c.created_at.desc()).limit(10)).all()
            return {
                "packages": count(packages),
                "due_now": count(packages, packages.c.next_due <= now),
                "failing_packages": count(packages, packages.c.failures > 0),
                "versions_seen": count(versions, versions.c.status != "baseline"),
                "queued": count(versions, versions.c.status == "queued"),
                "scan_failures": count(versions, versions.c.status == "failed"),
                "scan_retrying": count(versions, versions.c.status == "queued",
                                       versions.c.last_error.is_not(None)),
                "alerts": count(alerts),
                "deliveries_pending": count(deliveries, deliveries.c.status == "pending"),
                "deliveries_failed": count(deliveries, deliveries.c.status == "failed"),
                "last_poll_age_s": round(now - last_poll, 1) if last_poll else None,
                "recent_alerts": [{"id": r[0], "kind": r[1],
                                   "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                               time.gmtime(r[2]))}
                                  for r in recent],
                "failed_scans": [
                    {"package": f["name"], "version": f["version"],
                     "status": "gave up" if f["status"] == "failed" else "retrying",
                     "attempts": f["attempts"], "error": f["last_error"],
                     "next_attempt": None if f["status"] == "failed" else
                     time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(f["next_attempt"]))}
                    for f in self.scan_failures()],
            }
