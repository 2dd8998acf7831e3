"""What ``check`` and the proxy blocked or warned, kept in the shared database.

The proxy also keeps its last decisions in memory for ``/-/chainwatch/decisions``; this log is
what survives a restart and what ``chainwatch serve`` shows.

Writing never changes a decision: a database error is logged once (later ones at debug level)
and the gate's answer stands, so the gate stays fail-closed whatever the database does.
``check`` writes its run's decisions in one batch (``record``). The proxy hands each decision to
``record_once``, which only puts it on a bounded queue (its hot path takes no database lock); a
background thread writes the queue in batches. A proxy decision is kept once per package,
version, action, rule, source and period (``PERIOD_SECONDS``): the row carries a ``once`` key
(a digest of those and the period's start) under a unique index, so a packument asked for by
every client, by several proxy processes or again after a restart is one row per period.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Column, Engine, Index, Integer, String, Table, Text, insert, select
from sqlalchemy.exc import IntegrityError

from chainwatch.db import metadata

log = logging.getLogger(__name__)

#: one row per decision that blocked or warned, or allowed by a policy exception
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
    #: proxy rows: a digest of (origin, package, version, action, rule, source, period start);
    #: unique, so one such decision is one row per period whoever writes it; NULL for check rows
    Column("once", String(64)),
    Index("ix_gate_decisions_time", "time"),
    Index("ux_gate_decisions_once", "once", unique=True),
)

#: bounds on what a package author or registry controls (characters; longer text is clipped)
MAX_PACKAGE = 256
MAX_VERSION = 128
MAX_RULE = 128
MAX_REASON = 2000
MAX_SOURCE = 1000
#: a proxy decision is written at most once per this many seconds
PERIOD_SECONDS = 3600
#: decisions waiting for the background writer; beyond it new ones are dropped (and counted)
QUEUE_MAX = 10_000
#: rows per insert, and how long the writer gathers a batch
BATCH = 500
FLUSH_SECONDS = 0.5
#: once keys remembered in memory (skips the queue for a decision already written this period)
REMEMBERED = 50_000
#: rows one ``record`` call writes at most (a lockfile of 100k blocked versions is clipped)
MAX_PER_CALL = 20_000

ORIGINS = ("check", "proxy")
ACTIONS = ("block", "warn", "allow")


@dataclass(frozen=True)
class Recorded:
    origin: str  # check | proxy
    package: str
    version: str | None
    action: str  # block | warn | allow
    rule: str
    reason: str
    source: str | None = None  # the lockfile or client it concerned, when known


def clip(value: str, limit: int) -> str:
    """``value`` at most ``limit`` characters (an ellipsis marks a cut), without NUL (which
    PostgreSQL text refuses) or lone surrogates (which no database encodes)."""
    value = value.replace("\x00", "\ufffd")
    if len(value) > limit:
        value = value[: limit - 1] + "…"
    return value.encode("utf-8", "replace").decode("utf-8")


def _why(exc: BaseException) -> str:
    """One short line: the database's own error, without the statement and its parameters
    (which hold text a package author wrote)."""
    from chainwatch.errors import one_line

    orig = getattr(exc, "orig", None)
    inner = orig if isinstance(orig, BaseException) else exc
    return clip(f"{type(inner).__name__}: {one_line(inner)}" if str(inner)
                else type(inner).__name__, 200)


def _stamp(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class DecisionLog:
    """Append-only; writes never fail the caller's decision (a write error is logged)."""

    def __init__(self, engine: Engine, *, period: float = PERIOD_SECONDS,
                 clock: Callable[[], float] = time.time, queue_max: int = QUEUE_MAX,
                 warn: Callable[[str], None] | None = None) -> None:
        """``warn`` says the first write failure (a CLI prints it as one line); the
        default logs it as a warning."""
        self.engine = engine
        self.warn = warn
        self.period = period
        self.clock = clock
        #: decisions not written: a database error, a full queue or the per-call bound
        self.dropped = 0
        self._warned = False
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=queue_max)
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()
        self._writer: threading.Thread | None = None
        self._closed = False

    # -- writing ---------------------------------------------------------------------------

    def _row(self, entry: Recorded, when: float, once: bool) -> dict[str, Any]:
        origin = entry.origin if entry.origin in ORIGINS else "check"
        action = entry.action if entry.action in ACTIONS else "block"
        row: dict[str, Any] = {
            "time": _stamp(when), "origin": origin,
            "package": clip(entry.package, MAX_PACKAGE),
            "version": clip(entry.version, MAX_VERSION) if entry.version is not None else None,
            "action": action, "rule": clip(entry.rule, MAX_RULE) or "?",
            "reason": clip(entry.reason, MAX_REASON),
            "source": clip(entry.source, MAX_SOURCE) if entry.source is not None else None,
            "once": None}
        if once:
            start = int(when // self.period) * self.period if self.period > 0 else when
            key = "\x1f".join((origin, row["package"], row["version"] or "", action, row["rule"],
                               row["source"] or "", str(start)))
            row["once"] = hashlib.sha256(key.encode()).hexdigest()
        return row

    def _failed(self, exc: BaseException, count: int) -> None:
        self.dropped += count
        why = _why(exc)
        if not self._warned:
            self._warned = True
            message = f"gate decisions not kept in the database ({why}); the gate's answers stand"
            if self.warn is not None:
                self.warn(message)
            else:
                log.warning("%s", message)
        else:
            log.debug("gate decisions not kept: %s", why)

    def _insert(self, rows: list[dict[str, Any]]) -> None:
        """Write rows; a row whose ``once`` key is already there is skipped."""
        if not rows:
            return
        with self.engine.begin() as conn:
            if all(r["once"] is None for r in rows):
                conn.execute(insert(decisions), rows)
                return
            name = self.engine.dialect.name
            if name == "sqlite":
                from sqlalchemy.dialects import sqlite

                conn.execute(sqlite.insert(decisions).on_conflict_do_nothing(), rows)
                return
            if name == "postgresql":
                from sqlalchemy.dialects import postgresql

                conn.execute(postgresql.insert(decisions).on_conflict_do_nothing(), rows)
                return
        for row in rows:  # another database: one at a time, a duplicate is skipped
            try:
                with self.engine.begin() as conn:
                    conn.execute(insert(decisions), [row])
            except IntegrityError:
                continue

    def record(self, entries: Sequence[Recorded]) -> None:
        """Write these decisions now, in one transaction (``check``). Never raises."""
        try:
            now = self.clock()
            rows = [self._row(e, now, once=False) for e in entries[:MAX_PER_CALL]]
            if len(entries) > MAX_PER_CALL:
                self.dropped += len(entries) - MAX_PER_CALL
                log.warning("gate decisions: kept the first %d of %d", MAX_PER_CALL,
                            len(entries))
            self._insert(rows)
        except Exception as exc:  # the decision stands whatever the database does
            self._failed(exc, len(entries))

    def record_once(self, entry: Recorded) -> None:
        """Queue one decision for the background writer, once per period (the proxy's hot
        path: no database work here). Never raises, never blocks."""
        try:
            row = self._row(entry, self.clock(), once=True)
            with self._lock:
                if self._closed or row["once"] in self._seen:
                    return
                self._seen[row["once"]] = None
                while len(self._seen) > REMEMBERED:
                    self._seen.popitem(last=False)
                if self._writer is None:
                    self._writer = threading.Thread(target=self._run, name="gate-decisions",
                                                    daemon=True)
                    self._writer.start()
            self._queue.put_nowait(row)
        except queue.Full as exc:
            with self._lock:
                self._seen.pop(row["once"], None)  # may be offered again once there is room
            self._failed(exc if str(exc) else RuntimeError("the decision queue is full"), 1)
        except Exception as exc:
            self._failed(exc, 1)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            batch: list[dict[str, Any]] = []
            stop = first is None
            if first is not None:
                batch.append(first)
            deadline = time.monotonic() + FLUSH_SECONDS
            while not stop and len(batch) < BATCH:
                try:
                    item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                else:
                    batch.append(item)
            try:
                self._insert(batch)
            except Exception as exc:
                self._failed(exc, len(batch))
            for _ in range(len(batch) + (1 if stop else 0)):  # one per get()
                self._queue.task_done()
            if stop:
                return

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait (at most ``timeout`` seconds) until every queued decision is written or
        dropped; whether the queue was emptied."""
        end = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() >= end:
                return False
            time.sleep(0.01)
        return True

    def close(self, timeout: float = 1.0) -> None:
        """Write what is queued (for at most ``timeout`` seconds in all) and stop the writer;
        what is left after that is dropped with the daemon thread."""
        with self._lock:
            self._closed = True
            writer = self._writer
        if writer is None:
            return
        end = time.monotonic() + timeout
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            return
        writer.join(max(0.0, end - time.monotonic()))

    # -- reading ---------------------------------------------------------------------------

    def recent(self, *, limit: int = 50, action: str | None = None,
               origin: str | None = None) -> list[dict[str, Any]]:
        """The newest decisions first (at most ``limit``, at most 500)."""
        stmt = select(decisions).order_by(decisions.c.pk.desc()).limit(max(1, min(limit, 500)))
        if action is not None:
            stmt = stmt.where(decisions.c.action == action)
        if origin is not None:
            stmt = stmt.where(decisions.c.origin == origin)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(stmt).mappings()]


def open_log(url: str | None) -> DecisionLog:
    """A decision log on the database at ``url`` (the default one when None)."""
    from chainwatch.db import connect

    return DecisionLog(connect(url))
