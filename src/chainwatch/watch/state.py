"""The watcher's durable state: packages, versions seen, alerts and their deliveries.

Every step commits before the next begins, so a restart (even after ``kill -9``) resumes where it
stopped: a version is queued in the same transaction that records it as seen, its alert and the
deliveries owed are written in the same transaction that marks it scanned, and a delivery is
marked sent right after the sink accepted it (alerts carry their id as an idempotency key for the
one window that cannot be closed: a crash between a sink's answer and that commit).

Several processes may share one database (``watch --role``): a package being polled, a version
being scanned and a delivery being sent are each held by one claim at a time (``claimed_by``, a
token unique to the claim, and ``lease_until``). A claim is one conditional ``UPDATE`` (on
PostgreSQL its row is picked with ``FOR UPDATE SKIP LOCKED``, so claimers never wait on each
other; SQLite runs the single statement under its one writer lock); whatever ends a claim
(finish, failure, delivered) is an ``UPDATE … WHERE claimed_by = token`` that changes nothing
once the lease has lapsed and another process holds the row (see docs/design.md, "Several
watch processes").
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
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
    true,
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
    #: the poller that holds the package (several may run), until when
    Column("claimed_by", String(128)),
    Column("lease_until", Float),
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
    #: the scanner's claim (kept after ``done``: who finished it) and its lease
    Column("claimed_by", String(128)),
    Column("lease_until", Float),
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
    Column("claimed_by", String(128)),
    Column("lease_until", Float),
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
    #: the token of the claim this process holds on the version (None: not claimed)
    claim: str | None = None


@dataclass(frozen=True)
class Delivery:
    pk: int
    alert_id: str
    sink: str
    attempts: int
    payload: dict[str, Any]
    claim: str | None = None


@dataclass(frozen=True)
class Due:
    """A package claimed for one poll."""
    name: str
    hot: bool
    baselined: bool
    claim: str | None = None


class LeaseLost(Exception):
    """The claim lapsed and another process holds the row: this one's result is dropped."""


def _free(table: Table, now: float) -> Any:
    """Nobody holds the row: never claimed, released, or the holder's lease ran out."""
    return or_(table.c.lease_until.is_(None), table.c.lease_until <= now)


def _held(table: Table, claim: str | None) -> Any:
    """The row is still held by this claim (no condition for a caller that never claimed)."""
    return table.c.claimed_by == claim if claim is not None else true()


def _insert_new(conn: Any, table: Table, rows: list[dict[str, Any]], key: Any) -> int:
    """Insert the rows whose key is not there yet (``ON CONFLICT DO NOTHING`` on PostgreSQL
    and SQLite, so two processes inserting one key at once neither fail nor duplicate it);
    returns how many were inserted."""
    name = conn.dialect.name
    if name not in ("postgresql", "sqlite"):
        conn.execute(insert(table), rows)
        return len(rows)
    from sqlalchemy.dialects import postgresql, sqlite

    dialect_insert = postgresql.insert if name == "postgresql" else sqlite.insert
    # RETURNING counts what was inserted (psycopg's rowcount here is not reliable)
    stmt = (dialect_insert(table).values(rows).on_conflict_do_nothing(index_elements=[key])
            .returning(key))
    return len(conn.execute(stmt).all())


def _pid_of(claim: str) -> int:
    """The pid in a claim token ``host:pid:random#n`` (0 when there is none)."""
    parts = claim.rsplit(":", 2)
    return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else 0


def _queued(row: Any, claim: str | None = None) -> Queued:
    return Queued(row["pk"], row["name"], row["version"], row["published"], row["publisher"],
                  row["seen_at"], row["attempts"], claim)


def _migrate(engine: Engine) -> None:
    """Columns added after a database was created (``create_all`` adds tables, not columns)."""
    have = {c["name"] for c in inspect(engine).get_columns(versions.name)}
    if "next_attempt" not in have:
        with engine.begin() as conn:
            conn.execute(text(f"ALTER TABLE {versions.name} "
                              "ADD COLUMN next_attempt FLOAT NOT NULL DEFAULT 0"))
    for table in (packages, versions, deliveries):  # the claim columns (watch --role)
        have = {c["name"] for c in inspect(engine).get_columns(table.name)}
        for column, kind in (("claimed_by", "VARCHAR(128)"), ("lease_until", "FLOAT")):
            if column not in have:
                with engine.begin() as conn:
                    conn.execute(text(f"ALTER TABLE {table.name} ADD COLUMN {column} {kind}"))
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

    # -- claims (several processes on one database) ------------------------------------------
    def _claim(self, table: Table, key: Any, where: Sequence[Any], order: Sequence[Any],
               limit: int, claim: str, values: dict[str, Any]) -> list[Any]:
        """Claim up to ``limit`` free rows matching ``where``, returning the rows now held.

        PostgreSQL: ``SELECT key … ORDER BY … LIMIT n FOR UPDATE SKIP LOCKED`` (rows another
        claimer has locked are skipped, never waited for), then ``UPDATE … WHERE key IN (those)
        AND <the same conditions>`` in the same transaction, under those row locks. (Not one
        ``UPDATE … WHERE key IN (SELECT … SKIP LOCKED LIMIT n)``: PostgreSQL may run that
        subquery more than once and claim more than n rows.) SQLite has no row locks: one
        ``UPDATE … WHERE key IN (SELECT … LIMIT n) AND <conditions>`` statement runs under its
        single writer lock, so nothing another process claimed first is taken."""
        if limit <= 0:
            return []
        pick = select(key).where(*where).order_by(*order).limit(limit)
        with self.engine.begin() as conn:
            if conn.dialect.name == "sqlite":
                chosen: Any = pick.scalar_subquery()
            else:
                chosen = list(conn.execute(pick.with_for_update(skip_locked=True)).scalars())
                if not chosen:
                    return []
            stmt = (update(table).where(key.in_(chosen), *where)
                    .values(claimed_by=claim, **values).returning(*table.c))
            return list(conn.execute(stmt).mappings().all())

    def _renew(self, table: Table, key: Any, value: Any, claim: str, until: float) -> bool:
        with self.engine.begin() as conn:
            done = conn.execute(update(table).where(key == value, table.c.claimed_by == claim)
                                .where(table.c.lease_until.is_not(None))
                                .values(lease_until=until))
        return bool(done.rowcount)

    def release_dead(self, host: str, alive: Callable[[int], bool], now: float) -> int:
        """Free the leases held by processes of this host (claims named ``host:pid:…``) that
        are gone: a restart after ``kill -9`` resumes at once instead of waiting out the lease.
        A version keeps its ``next_attempt`` (a release that killed its scanner still waits
        its backoff). Returns how many rows were freed."""
        freed = 0
        for table in (packages, versions, deliveries):
            with self.engine.begin() as conn:
                holders = conn.execute(select(table.c.claimed_by).distinct()
                                       .where(table.c.claimed_by.startswith(f"{host}:",
                                                                            autoescape=True))
                                       .where(table.c.lease_until > now)).scalars().all()
                dead = [h for h in holders if not alive(_pid_of(h))]
                if dead:
                    freed += conn.execute(update(table).where(table.c.claimed_by.in_(dead))
                                          .where(table.c.lease_until.is_not(None))
                                          .values(lease_until=None)).rowcount
        return freed

    # -- the watchlist ---------------------------------------------------------------------
    def add_packages(self, names: list[str], hot: set[str]) -> int:
        """Add names not yet watched (due at once); returns how many were new. Pollers that
        start together add each name once (the insert skips names another added meanwhile)."""
        with self.engine.begin() as conn:
            known = set(conn.execute(select(packages.c.name)).scalars())
            fresh = [{"name": n, "hot": n in hot, "baselined": False, "next_due": 0.0,
                      "failures": 0} for n in dict.fromkeys(names) if n not in known]
            return _insert_new(conn, packages, fresh, packages.c.name) if fresh else 0

    def watched(self) -> list[str]:
        """The names on the watchlist this database holds (from earlier runs)."""
        with self.engine.connect() as conn:
            return sorted(conn.execute(select(packages.c.name)).scalars())

    def due(self, now: float, limit: int) -> list[tuple[str, bool, bool]]:
        """(name, hot, baselined) of packages whose time has come and that no poller holds,
        most overdue first."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(packages.c.name, packages.c.hot, packages.c.baselined)
                                .where(packages.c.next_due <= now, _free(packages, now))
                                .order_by(packages.c.next_due).limit(limit)).all()
        return [(r[0], bool(r[1]), bool(r[2])) for r in rows]

    def claim_due(self, claim: str, now: float, limit: int, lease: float) -> list[Due]:
        """Claim up to ``limit`` due packages for one poll each (several pollers may run)."""
        rows = self._claim(packages, packages.c.name,
                           [packages.c.next_due <= now, _free(packages, now)],
                           [packages.c.next_due, packages.c.name], limit, claim,
                           {"lease_until": now + lease})
        rows.sort(key=lambda r: (r["next_due"], r["name"]))
        return [Due(r["name"], bool(r["hot"]), bool(r["baselined"]), claim) for r in rows]

    def mark_due(self, names: list[str]) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(packages).where(packages.c.name.in_(names)).values(next_due=0.0))

    def known_versions(self, name: str) -> set[str]:
        with self.engine.connect() as conn:
            return set(conn.execute(select(versions.c.version)
                                    .where(versions.c.name == name)).scalars())

    def record_poll(self, name: str, new: list[dict[str, Any]], baseline: bool, now: float,
                    next_due: float, claim: str | None = None) -> None:
        """New versions (queued, or kept as baseline) and the package's next turn, together.
        With ``claim``, only while that claim still holds the package (else LeaseLost, and
        nothing is written: the poller that holds it now records what it saw)."""
        with self.engine.begin() as conn:
            done = conn.execute(update(packages).where(packages.c.name == name)
                                .where(_held(packages, claim)).values(
                baselined=True, checked_at=now, next_due=next_due, failures=0,
                last_error=None, claimed_by=None, lease_until=None))
            if claim is not None and not done.rowcount:
                raise LeaseLost(f"the claim on {name} lapsed")
            if new:
                conn.execute(insert(versions), [
                    {**row, "name": name, "seen_at": now, "attempts": 0,
                     "status": row.get("status") or ("baseline" if baseline else "queued")}
                    for row in new])

    def status_of(self, name: str) -> dict[str, Any]:
        with self.engine.connect() as conn:
            row = conn.execute(select(packages).where(packages.c.name == name)).mappings().first()
        return dict(row) if row is not None else {}

    def record_poll_failure(self, name: str, error: str, next_due: float,
                            claim: str | None = None) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(packages).where(packages.c.name == name)
                         .where(_held(packages, claim)).values(
                failures=packages.c.failures + 1, last_error=error[:1000], next_due=next_due,
                claimed_by=None, lease_until=None))

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
        return [_queued(r) for r in rows]

    def claim_next(self, claim: str, now: float, lease: float) -> Queued | None:
        """Claim the oldest queued version that is free and due, for ``lease`` seconds."""
        rows = self._claim(versions, versions.c.pk,
                           [versions.c.status == "queued", versions.c.next_attempt <= now,
                            _free(versions, now)],
                           [versions.c.seen_at, versions.c.pk], 1, claim,
                           {"lease_until": now + lease})
        return _queued(rows[0], claim) if rows else None

    def claim_version(self, item: Queued, claim: str, now: float, lease: float) -> Queued | None:
        """Claim this very version if it is still queued and free (None: it is not)."""
        with self.engine.begin() as conn:
            done = conn.execute(update(versions).where(
                versions.c.pk == item.pk, versions.c.status == "queued", _free(versions, now))
                .values(claimed_by=claim, lease_until=now + lease))
        return replace(item, claim=claim) if done.rowcount else None

    def renew_version(self, item: Queued, until: float) -> bool:
        """Extend the lease of a scan in progress; False once it is no longer held."""
        return item.claim is not None and self._renew(versions, versions.c.pk, item.pk,
                                                      item.claim, until)

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
        deliveries owed. Returns False when the alert existed already (never sent twice).
        A claimed item finishes only while its claim holds it: else LeaseLost, and nothing is
        written (another scanner has the version now; its finish counts)."""
        created = False
        with self.engine.begin() as conn:
            done = conn.execute(update(versions).where(versions.c.pk == item.pk)
                                .where(versions.c.status == "queued", _held(versions, item.claim))
                                .values(status="done", level=level, scanned_at=now,
                                        last_error=None, lease_until=None))
            if item.claim is not None and not done.rowcount:
                raise LeaseLost(f"the claim on {item.name}@{item.version} lapsed")
            if alert is not None:
                created = self._alert(conn, *alert, sinks, now)
        return created

    def _alert(self, conn: Any, alert_id: str, kind: str, payload: dict[str, Any],
               sinks: list[str], now: float) -> bool:
        """Insert the alert unless its id exists: ``INSERT … ON CONFLICT DO NOTHING``, so two
        processes writing one burst alert at once create it once and neither fails."""
        exists = conn.execute(select(alerts.c.id).where(alerts.c.id == alert_id)).first()
        if exists is not None:
            return False
        row = {"id": alert_id, "kind": kind, "created_at": now, "payload": json.dumps(payload)}
        if not _insert_new(conn, alerts, [row], alerts.c.id):
            return False
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
        never finish; returns the item with its new attempt count (LeaseLost when the item's
        claim no longer holds it)."""
        with self.engine.begin() as conn:
            done = conn.execute(update(versions).where(versions.c.pk == item.pk)
                                .where(_held(versions, item.claim)).values(
                attempts=item.attempts + 1, next_attempt=next_attempt))
            if item.claim is not None and not done.rowcount:
                raise LeaseLost(f"the claim on {item.name}@{item.version} lapsed")
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
            done = conn.execute(update(versions).where(versions.c.pk == item.pk)
                                .where(versions.c.status == "queued", _held(versions, item.claim))
                                .values(attempts=item.attempts, last_error=error[:1000],
                                        status="failed" if next_attempt is None else "queued",
                                        next_attempt=next_attempt if next_attempt is not None
                                        else 0.0, lease_until=None))
            if item.claim is not None and not done.rowcount:
                raise LeaseLost(f"the claim on {item.name}@{item.version} lapsed")
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

    def claim_delivery(self, claim: str, now: float, lease: float,
                       sinks: Sequence[str]) -> Delivery | None:
        """Claim the most overdue free delivery to one of ``sinks`` (the sinks this process
        can send to), for ``lease`` seconds."""
        rows = self._claim(deliveries, deliveries.c.pk,
                           [deliveries.c.status == "pending", deliveries.c.next_attempt <= now,
                            deliveries.c.sink.in_(list(sinks)), _free(deliveries, now)],
                           [deliveries.c.next_attempt, deliveries.c.pk], 1, claim,
                           {"lease_until": now + lease})
        if not rows:
            return None
        row = rows[0]
        with self.engine.connect() as conn:
            payload = conn.execute(select(alerts.c.payload)
                                   .where(alerts.c.id == row["alert_id"])).scalar_one()
        return Delivery(row["pk"], row["alert_id"], row["sink"], row["attempts"],
                        json.loads(payload), claim)

    def delivered(self, delivery: Delivery, now: float) -> bool:
        """Mark a delivery sent (while its claim holds it); False when the claim had lapsed
        (another deliverer holds it and may send it again, with the same idempotency key)."""
        with self.engine.begin() as conn:
            done = conn.execute(update(deliveries).where(deliveries.c.pk == delivery.pk)
                                .where(_held(deliveries, delivery.claim)).values(
                status="sent", sent_at=now, attempts=delivery.attempts + 1, last_error=None,
                lease_until=None))
        return bool(done.rowcount)

    def renew_delivery(self, delivery: Delivery, until: float) -> bool:
        return delivery.claim is not None and self._renew(
            deliveries, deliveries.c.pk, delivery.pk, delivery.claim, until)

    def delivery_failed(self, delivery: Delivery, error: str, next_attempt: float | None) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(deliveries).where(deliveries.c.pk == delivery.pk)
                         .where(_held(deliveries, delivery.claim)).values(
                attempts=delivery.attempts + 1, last_error=error[:1000],
                status="failed" if next_attempt is None else "pending",
                next_attempt=next_attempt or 0.0, lease_until=None))

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
                "versions_baselined": count(versions, versions.c.status == "baseline"),
                "packages_baselined": count(packages, packages.c.baselined.is_(True)),
                "queued": count(versions, versions.c.status == "queued"),
                "scanning": count(versions, versions.c.status == "queued",
                                  versions.c.lease_until > now),
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
