"""The read model: what the API and the pages show, read from the shared database.

Every list is newest first and paged by an opaque cursor; every value that a package author
controls is returned as plain data and escaped where it is rendered, never here.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import statistics
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from sqlalchemy import Engine, and_, func, or_, select

if TYPE_CHECKING:
    from chainwatch.incidents.model import Incident
    from chainwatch.intel.base import KnownBadSource

log = logging.getLogger("chainwatch.serve")

T = TypeVar("T")

#: the largest page any list returns, whatever ``limit`` asks
MAX_LIMIT = 500
#: a cursor longer than this is refused before it is decoded
MAX_CURSOR = 600
#: the most days the overview's charts cover
MAX_DAYS = 366
#: the most environments one exposure answer lists (the newest sightings first)
MAX_EXPOSURE = 5000
#: how long a computed incident list is reused when nothing it reads has changed
INCIDENT_TTL_S = 30.0
LEVELS = ("benign", "suspicious", "malicious")
ACTIONS = ("block", "warn", "allow")


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
    #: where the judged bytes came from: registry | tarball | folder | unknown (stored before
    #: the origin was recorded); a tarball or folder is local files, whose package.json's
    #: name@version is only a claim (see ``verdicts.registry_match``)
    origin: str = "unknown"
    #: how the lists show it: "registry", "upload" (a tarball sent to ``POST /api/v1/scans``),
    #: "local tarball", "local folder" or "unknown"
    origin_label: str = "unknown"


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
    hypothesis: str  # the leading hypothesis' title (as the CLI shows it)
    confidence: str
    #: when the incident last changed: its newest member's scan or publish time (None if
    #: no member has either)
    updated_at: str | None


@dataclass(frozen=True)
class EnvironmentRow:
    pk: int
    label: str
    kind: str
    source: str
    recorded_at: str
    packages: int


@dataclass(frozen=True)
class SourceRow:
    kind: str
    source: str
    packages: int  # in its latest recording
    recorded_at: str  # its latest recording


@dataclass(frozen=True)
class LabelRow:
    """One environment: a label, with every source recorded under it (a lockfile and a
    node_modules recorded under one label are one environment with two sources)."""

    label: str
    sources: list[SourceRow]
    packages: int  # distinct name@version across the latest recording of each source
    recordings: int  # every recording under the label (each source, each time)
    last_recorded: str
    last_pk: int


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
    #: verdicts by level, plus "alerts", "incidents", "environments" (distinct labels),
    #: "blocked" (distinct package, version and rule blocked, however many runs) and
    #: "block_runs" (every block decision)
    counts: dict[str, int]
    #: one entry per day (oldest first): (YYYY-MM-DD, {level: count})
    verdicts_per_day: list[tuple[str, dict[str, int]]]
    #: one entry per day (oldest first): (YYYY-MM-DD, p50 seconds from publish to verdict or None)
    latency_per_day: list[tuple[str, float | None]]
    latest_alerts: list[AlertRow]
    latest_flagged: list[VerdictRow]


def clamp_limit(limit: int) -> int:
    """``limit`` held within 1..MAX_LIMIT."""
    return max(1, min(int(limit), MAX_LIMIT))


def _newest_by_pk(table: Any, query: Any, kind: str, cursor: str | None, limit: int) -> Any:
    """``query`` newest first by primary key, after ``cursor`` (a ``kind`` cursor naming the
    last pk seen), one row more than ``limit`` (so the caller knows whether a page follows)."""
    if cursor:
        (pk,) = decode_cursor(kind, cursor, (int,))
        query = query.where(table.c.pk < pk)
    return query.order_by(table.c.pk.desc()).limit(limit + 1)


def encode_cursor(kind: str, *values: str | int | float) -> str:
    """An opaque cursor: the position after the last row of a page, for one kind of list."""
    raw = json.dumps([kind, *values], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(kind: str, cursor: str, types: tuple[type, ...]) -> list[Any]:
    """The values of a cursor made by :func:`encode_cursor` for ``kind``; ValueError on any
    other string (too long, not base64, not JSON, another list's cursor, wrong types)."""
    if len(cursor) > MAX_CURSOR:
        raise ValueError("invalid cursor: too long")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = json.loads(raw.decode("utf-8"))
        json.dumps(values, ensure_ascii=False).encode("utf-8")  # no lone surrogate inside
    except (ValueError, binascii.Error, UnicodeError, RecursionError):
        raise ValueError("invalid cursor") from None
    if (not isinstance(values, list) or len(values) != len(types) + 1 or values[0] != kind
            or not all(_typed(v, t) for v, t in zip(values[1:], types, strict=True))):
        raise ValueError("invalid cursor")
    return values[1:]


def _typed(value: Any, kind: type) -> bool:
    if kind is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, kind) and not isinstance(value, bool)


def parse_since(since: str) -> str:
    """An ISO 8601 date or date-time as the verdict memory writes times (UTC, seconds);
    ValueError on anything else."""
    text = since.strip()
    if not text or len(text) > 40:
        raise ValueError(f"not an ISO 8601 date or time: {since[:40]!r}")
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"not an ISO 8601 date or time: {since[:40]!r}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).isoformat(timespec="seconds")


def check_package(name: str) -> str:
    from chainwatch.names import name_problem

    if (problem := name_problem(name)) is not None:
        raise ValueError(f"invalid package name {name[:80]!r}: {problem}")
    return name


#: what a stored document's ``origin`` may say; anything else is shown as "unknown"
ORIGINS = ("registry", "tarball", "folder")


def origin_of(doc: Any) -> tuple[str, str]:
    """A stored ``chainwatch.scan/1`` document's origin and the label the lists show."""
    origin = doc.get("origin") if isinstance(doc, dict) else None
    if origin not in ORIGINS:
        return "unknown", "unknown"
    if origin == "tarball":
        return "tarball", "upload" if doc.get("source") == "upload" else "local tarball"
    return str(origin), "local folder" if origin == "folder" else "registry"


def missing_verdict(key: str) -> str:
    """The 404 message for a verdict key nothing is stored under. A name@version finds only a
    registry release stored without an integrity: an upload or another local scan is keyed by
    its bytes (its sha512 integrity, or local:... for a folder), never by the name@version its
    package.json claims, so the list's ``key`` is the way to it."""
    shown = " ".join(key.split())[:300]
    said = f"no verdict is stored under {shown}"
    if "@" in key.lstrip("@") and not key.startswith(("sha", "local:")):
        said += (": a name@version finds only a registry release stored without an integrity;"
                 " registry releases, uploads and other local scans are keyed by their bytes"
                 " (their sha512 integrity, or local:... for a folder), so take the key from"
                 " the verdict list (GET /api/v1/verdicts?package=NAME, or the Verdicts page)")
    return said


def _verdict_row(r: Any) -> VerdictRow:
    try:
        doc = json.loads(r["document"])
    except (ValueError, TypeError):
        doc = None
    origin, label = origin_of(doc)
    return VerdictRow(key=r["key"], package=r["package"], version=r["version"],
                      integrity=r["integrity"], level=r["level"], score=int(r["score"]),
                      baseline=r["baseline"], top_rule=r["top_rule"],
                      top_message=r["top_message"], scanned_at=r["scanned_at"],
                      origin=origin, origin_label=label)


def _payload(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {"unreadable": text[:1000]}
    return value if isinstance(value, dict) else {"value": value}


#: the indexes the read model's lists are ordered and filtered by, added to existing databases
#: (the tables belong to other modules; CREATE INDEX IF NOT EXISTS leaves their schema alone)
READ_INDEXES = (
    ("ix_serve_verdicts_scanned", "verdicts", "scanned_at, key"),
    ("ix_serve_verdicts_level", "verdicts", "level, scanned_at"),
    ("ix_serve_alerts_created", "watch_alerts", "created_at, id"),
    ("ix_serve_deliveries_alert", "watch_deliveries", "alert_id"),
    ("ix_serve_fleet_environment", "fleet_packages", "environment"),
    ("ix_serve_decisions_action", "gate_decisions", "action, pk"),
)


def ensure_indexes(engine: Engine) -> None:
    """Create the read model's indexes where missing; a failure (another server creating the
    same index at the same moment, a read-only role) only costs speed, so it is logged."""
    from sqlalchemy import text

    for name, table, columns in READ_INDEXES:
        try:
            with engine.begin() as conn:
                conn.execute(text(f"CREATE INDEX IF NOT EXISTS {name} ON {table} ({columns})"))
        except Exception as exc:  # never fatal: the lists still work, only slower
            log.warning("could not create index %s: %s", name, " ".join(str(exc).split())[:200])


def _iso(when: datetime | None) -> str | None:
    return when.isoformat() if when else None


class ReadModel:
    """Reads for the API and the pages (SQLite or PostgreSQL through one engine).

    ``known_bad`` (added to the contract, optional) is asked when incidents are grouped, as
    ``chainwatch incidents`` does; without it the built-in list is used."""

    def __init__(self, engine: Engine, known_bad: KnownBadSource | None = None) -> None:
        self.engine = engine
        ensure_indexes(engine)
        self._known_bad = known_bad
        self._lock = threading.Lock()
        self._incidents: tuple[tuple[Any, ...], float, list[Incident],
                               list[IncidentRow]] | None = None

    # -- verdicts ----------------------------------------------------------------------------
    def verdicts(self, *, package: str | None = None, level: str | None = None,
                 since: str | None = None, limit: int = 50,
                 cursor: str | None = None) -> Page[VerdictRow]:
        from chainwatch.verdicts import verdicts as table

        limit = clamp_limit(limit)
        query = select(table.c.key, table.c.package, table.c.version, table.c.integrity,
                       table.c.level, table.c.score, table.c.baseline, table.c.top_rule,
                       table.c.top_message, table.c.scanned_at, table.c.document)
        if package is not None:
            query = query.where(table.c.package == check_package(package))
        if level is not None:
            if level not in LEVELS:
                raise ValueError(f"level must be one of {', '.join(LEVELS)}")
            query = query.where(table.c.level == level)
        if since is not None:
            query = query.where(table.c.scanned_at >= parse_since(since))
        if cursor:
            at, key = decode_cursor("verdicts", cursor, (str, str))
            query = query.where(or_(table.c.scanned_at < at,
                                    and_(table.c.scanned_at == at, table.c.key < key)))
        query = query.order_by(table.c.scanned_at.desc(), table.c.key.desc()).limit(limit + 1)
        with self.engine.connect() as conn:
            rows = [_verdict_row(r) for r in conn.execute(query).mappings()]
        more = len(rows) > limit
        rows = rows[:limit]
        nxt = encode_cursor("verdicts", rows[-1].scanned_at, rows[-1].key) if more else None
        return Page(rows, nxt)

    def verdict(self, key: str) -> dict[str, Any] | None:
        """The full ``chainwatch.scan/1`` document stored under ``key``."""
        from chainwatch.verdicts import verdicts as table

        if not key or len(key) > 256:
            return None
        with self.engine.connect() as conn:
            text = conn.execute(select(table.c.document).where(table.c.key == key)).scalar()
        if text is None:
            return None
        doc = json.loads(text)
        return doc if isinstance(doc, dict) else None

    # -- alerts ------------------------------------------------------------------------------
    def alerts(self, *, limit: int = 50, cursor: str | None = None) -> Page[AlertRow]:
        from chainwatch.watch.state import alerts as table
        from chainwatch.watch.state import deliveries

        limit = clamp_limit(limit)
        query = select(table)
        if cursor:
            at, ident = decode_cursor("alerts", cursor, (float, str))
            query = query.where(or_(table.c.created_at < at,
                                    and_(table.c.created_at == at, table.c.id < ident)))
        query = query.order_by(table.c.created_at.desc(), table.c.id.desc()).limit(limit + 1)
        with self.engine.connect() as conn:
            rows = list(conn.execute(query).mappings())
            more = len(rows) > limit
            rows = rows[:limit]
            owed: dict[str, list[DeliveryRow]] = {}
            ids = [r["id"] for r in rows]
            if ids:
                for d in conn.execute(select(deliveries).where(deliveries.c.alert_id.in_(ids))
                                      .order_by(deliveries.c.pk)).mappings():
                    owed.setdefault(d["alert_id"], []).append(DeliveryRow(
                        sink=d["sink"], status=d["status"], attempts=int(d["attempts"]),
                        sent_at=d["sent_at"], last_error=d["last_error"]))
        items = [AlertRow(id=r["id"], kind=r["kind"], created_at=float(r["created_at"]),
                          payload=_payload(r["payload"]), deliveries=owed.get(r["id"], []))
                 for r in rows]
        nxt = encode_cursor("alerts", items[-1].created_at, items[-1].id) if more else None
        return Page(items, nxt)

    # -- incidents ---------------------------------------------------------------------------
    def _known(self) -> KnownBadSource:
        if self._known_bad is None:
            from chainwatch.intel import BuiltinKnownBad

            self._known_bad = BuiltinKnownBad()
        return self._known_bad

    def _grouped(self) -> tuple[list[Incident], list[IncidentRow]]:
        """Stored suspicious and malicious verdicts grouped as ``chainwatch incidents`` does,
        with their rows; recomputed when the verdicts or the fleet change, else at most every
        INCIDENT_TTL_S (the known-bad store may change without either)."""
        from chainwatch.fleet import environments, holdings
        from chainwatch.incidents.ach import assess
        from chainwatch.incidents.cluster import cluster
        from chainwatch.incidents.store import observations_from_db
        from chainwatch.verdicts import verdicts as table

        with self.engine.connect() as conn:
            flagged = conn.execute(select(func.count(), func.max(table.c.scanned_at))
                                   .where(table.c.level.in_(("suspicious", "malicious")))).one()
            held = conn.execute(select(func.max(holdings.c.pk))).one()
            envs = conn.execute(select(func.count(), func.max(environments.c.pk))).one()
        mark = (*flagged, *held, *envs)
        with self._lock:
            cached = self._incidents
            if (cached is not None and cached[0] == mark
                    and time.monotonic() - cached[1] < INCIDENT_TTL_S):
                return cached[2], cached[3]
            found = cluster(observations_from_db(self.engine, self._known()))
            rows = []
            for inc in found:
                a = assess(inc)
                rows.append(IncidentRow(
                    id=inc.id, title=inc.title, level=inc.level, size=len(inc.members),
                    first_published=_iso(inc.first_published),
                    last_published=_iso(inc.last_published), hypothesis=a.best.title,
                    confidence=a.confidence, updated_at=_changed(inc)))
            rows.sort(key=lambda r: (r.first_published is not None, r.first_published or "",
                                     r.id), reverse=True)
            self._incidents = (mark, time.monotonic(), found, rows)
            return found, rows

    def incidents(self) -> list[IncidentRow]:
        return list(self._grouped()[1])

    def _incident(self, incident_id: str) -> Incident | None:
        if not incident_id or len(incident_id) > 64:
            return None
        return next((i for i in self._grouped()[0] if i.id == incident_id), None)

    def incident(self, incident_id: str) -> dict[str, Any] | None:
        """The ``chainwatch.brief/1`` document of one incident."""
        from chainwatch.incidents import brief

        inc = self._incident(incident_id)
        if inc is None:
            return None
        exposure = [{"label": e.label, "package": e.name, "version": e.version,
                     "recorded_at": e.last_seen}
                    for m in inc.members for e in self._held(m.package, m.version, exact=True)]
        return brief.build(inc, exposure, self._labels())

    def incident_html(self, incident_id: str) -> str | None:
        """The incident's brief rendered as the standalone HTML report."""
        from chainwatch.incidents.render import render_html

        doc = self.incident(incident_id)
        return render_html(doc) if doc is not None else None

    # -- fleet -------------------------------------------------------------------------------
    def _labels(self) -> int:
        from chainwatch.fleet import environments as table

        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count(func.distinct(table.c.label))))
                       .scalar_one())

    def exposure(self, spec: str) -> list[ExposureRow]:
        """Environments that hold ``name@version`` or ``name@range``; ValueError on a bad spec.

        One row per (environment label, version): the first and last time that label was
        recorded holding it, with the kind, source, path and dev flag of the latest record;
        newest first, at most MAX_EXPOSURE rows."""
        from chainwatch.fleet import parse_spec

        name, wanted, exact = parse_spec(spec)
        return self._held(name, wanted, exact=exact)

    def _held(self, name: str, wanted: str, *, exact: bool) -> list[ExposureRow]:
        from chainwatch.fleet import environments, held_query

        stmt = held_query(name, wanted, exact).order_by(environments.c.recorded_at.desc(),
                                                        environments.c.pk.desc())
        matches: dict[str, bool] = {}
        latest: dict[tuple[str, str], ExposureRow] = {}
        first: dict[tuple[str, str], str] = {}
        with self.engine.connect() as conn:
            for r in conn.execute(stmt).mappings():
                version = r["version"]
                if not exact:
                    if version not in matches:
                        matches[version] = _satisfies(version, wanted)
                    if not matches[version]:
                        continue
                key = (r["label"], version)
                if key not in latest:
                    if len(latest) >= MAX_EXPOSURE:
                        continue
                    latest[key] = ExposureRow(
                        label=r["label"], kind=r["kind"], source=r["source"], name=r["name"],
                        version=version, dev=bool(r["dev"]), path=r["path"] or "",
                        first_seen=r["recorded_at"], last_seen=r["recorded_at"])
                first[key] = r["recorded_at"]  # rows come newest first: the last is the first
        return [replace(row, first_seen=first[key]) for key, row in latest.items()]

    def environments(self, *, limit: int = 50, cursor: str | None = None) -> Page[EnvironmentRow]:
        from chainwatch.fleet import environments as table
        from chainwatch.fleet import holdings

        limit = clamp_limit(limit)
        query = _newest_by_pk(table, select(table), "environments", cursor, limit)
        with self.engine.connect() as conn:
            rows = list(conn.execute(query).mappings())
            more = len(rows) > limit
            rows = rows[:limit]
            pks = [r["pk"] for r in rows]
            counts: dict[int, int] = {}
            if pks:
                counts = {int(pk): int(n) for pk, n in conn.execute(
                    select(holdings.c.environment, func.count())
                    .where(holdings.c.environment.in_(pks)).group_by(holdings.c.environment))}
        items = [EnvironmentRow(pk=int(r["pk"]), label=r["label"], kind=r["kind"],
                                source=r["source"], recorded_at=r["recorded_at"],
                                packages=counts.get(int(r["pk"]), 0)) for r in rows]
        nxt = encode_cursor("environments", items[-1].pk) if more else None
        return Page(items, nxt)

    def environment_labels(self, *, limit: int = 50,
                           cursor: str | None = None) -> Page[LabelRow]:
        """Environments as the overview, exposure and briefs count them: one row per label,
        most recently recorded first, with its sources (each one's latest recording)."""
        from chainwatch.fleet import environments as table
        from chainwatch.fleet import holdings

        limit = clamp_limit(limit)
        last = func.max(table.c.pk)
        query = (select(table.c.label, last.label("last"), func.count().label("n"),
                        func.max(table.c.recorded_at).label("recorded"))
                 .group_by(table.c.label))
        if cursor:
            (pk,) = decode_cursor("environment-labels", cursor, (int,))
            query = query.having(last < pk)
        query = query.order_by(last.desc()).limit(limit + 1)
        with self.engine.connect() as conn:
            groups = list(conn.execute(query).mappings())
            more = len(groups) > limit
            groups = groups[:limit]
            labels = [g["label"] for g in groups]
            latest: dict[int, tuple[str, str, str, str]] = {}
            if labels:
                per_source = (select(func.max(table.c.pk)).where(table.c.label.in_(labels))
                              .group_by(table.c.label, table.c.kind, table.c.source))
                for r in conn.execute(select(table).where(table.c.pk.in_(per_source))
                                      .order_by(table.c.pk.desc())).mappings():
                    latest[int(r["pk"])] = (r["label"], r["kind"], r["source"],
                                            r["recorded_at"])
            counts: dict[int, int] = {}
            distinct: dict[str, int] = {}
            if latest:
                counts = {int(pk): int(n) for pk, n in conn.execute(
                    select(holdings.c.environment, func.count())
                    .where(holdings.c.environment.in_(list(latest)))
                    .group_by(holdings.c.environment))}
                release = holdings.c.name.concat("@").concat(holdings.c.version)
                distinct = {str(label): int(n) for label, n in conn.execute(
                    select(table.c.label, func.count(func.distinct(release)))
                    .join(holdings, holdings.c.environment == table.c.pk)
                    .where(table.c.pk.in_(list(latest))).group_by(table.c.label))}
        sources: dict[str, list[SourceRow]] = {}
        for pk, (label, kind, source, recorded_at) in latest.items():
            sources.setdefault(label, []).append(
                SourceRow(kind=kind, source=source, packages=counts.get(pk, 0),
                          recorded_at=recorded_at))
        items = [LabelRow(label=g["label"], sources=sources.get(g["label"], []),
                          packages=distinct.get(g["label"], 0), recordings=int(g["n"]),
                          last_recorded=g["recorded"], last_pk=int(g["last"]))
                 for g in groups]
        nxt = encode_cursor("environment-labels", items[-1].last_pk) if more else None
        return Page(items, nxt)

    # -- gate decisions ----------------------------------------------------------------------
    def decisions(self, *, action: str | None = None, limit: int = 50,
                  cursor: str | None = None) -> Page[DecisionRow]:
        from chainwatch.gate.decisions import decisions as table

        limit = clamp_limit(limit)
        query = select(table)
        if action is not None:
            if action not in ACTIONS:
                raise ValueError(f"action must be one of {', '.join(ACTIONS)}")
            query = query.where(table.c.action == action)
        query = _newest_by_pk(table, query, "decisions", cursor, limit)
        with self.engine.connect() as conn:
            rows = list(conn.execute(query).mappings())
        more = len(rows) > limit
        items = [DecisionRow(pk=int(r["pk"]), time=r["time"], origin=r["origin"],
                             package=r["package"], version=r["version"], action=r["action"],
                             rule=r["rule"], reason=r["reason"], source=r["source"])
                 for r in rows[:limit]]
        nxt = encode_cursor("decisions", items[-1].pk) if more else None
        return Page(items, nxt)

    # -- the overview ------------------------------------------------------------------------
    def overview(self, days: int = 14) -> Overview:
        from chainwatch.gate.decisions import decisions
        from chainwatch.verdicts import verdicts as table
        from chainwatch.watch.state import alerts
        from chainwatch.watch.state import versions as releases

        days = max(1, min(int(days), MAX_DAYS))
        today = datetime.now(UTC).date()
        start = today - timedelta(days=days - 1)
        cutoff = start.isoformat()
        day = func.substr(table.c.scanned_at, 1, 10)
        with self.engine.connect() as conn:
            counts: dict[str, int] = dict.fromkeys(LEVELS, 0)
            for level, n in conn.execute(select(table.c.level, func.count())
                                         .group_by(table.c.level)):
                counts[str(level)] = int(n)
            counts["alerts"] = int(conn.execute(select(func.count()).select_from(alerts))
                                   .scalar_one())
            blocked = (select(decisions.c.package, decisions.c.version, decisions.c.rule)
                       .where(decisions.c.action == "block").distinct().subquery())
            counts["blocked"] = int(conn.execute(select(func.count()).select_from(blocked))
                                    .scalar_one())
            counts["block_runs"] = int(conn.execute(
                select(func.count()).select_from(decisions)
                .where(decisions.c.action == "block")).scalar_one())
            per_day: dict[str, dict[str, int]] = {}
            for d, level, n in conn.execute(
                    select(day, table.c.level, func.count())
                    .where(table.c.scanned_at >= cutoff).group_by(day, table.c.level)):
                per_day.setdefault(str(d), dict.fromkeys(LEVELS, 0))[str(level)] = int(n)
            since = datetime.combine(start, datetime.min.time(), UTC).timestamp()
            waits: dict[str, list[float]] = {}
            for published, scanned in conn.execute(
                    select(releases.c.published, releases.c.scanned_at)
                    .where(releases.c.scanned_at >= since, releases.c.published.is_not(None))
                    .limit(200_000)):
                wait = _latency(published, scanned)
                if wait is not None:
                    key = datetime.fromtimestamp(scanned, UTC).date().isoformat()
                    waits.setdefault(key, []).append(wait)
        counts["environments"] = self._labels()
        counts["incidents"] = len(self._grouped()[1])
        dates = [(start + timedelta(days=i)).isoformat() for i in range(days)]
        flagged = self._flagged(10)
        return Overview(
            counts=counts,
            verdicts_per_day=[(d, per_day.get(d, dict.fromkeys(LEVELS, 0))) for d in dates],
            latency_per_day=[(d, statistics.median(waits[d]) if d in waits else None)
                             for d in dates],
            latest_alerts=self.alerts(limit=10).items, latest_flagged=flagged)

    def _flagged(self, limit: int) -> list[VerdictRow]:
        from chainwatch.verdicts import verdicts as table

        query = (select(table.c.key, table.c.package, table.c.version, table.c.integrity,
                        table.c.level, table.c.score, table.c.baseline, table.c.top_rule,
                        table.c.top_message, table.c.scanned_at, table.c.document)
                 .where(table.c.level.in_(("suspicious", "malicious")))
                 .order_by(table.c.scanned_at.desc(), table.c.key.desc()).limit(limit))
        with self.engine.connect() as conn:
            return [_verdict_row(r) for r in conn.execute(query).mappings()]


def _changed(incident: Incident) -> str | None:
    """The newest scan (detected_at) or publish time among an incident's members."""
    from chainwatch.analysis.metadata import parse_time

    times = [t for m in incident.members for raw in (m.detected_at, m.published)
             if (t := parse_time(raw)) is not None]
    return _iso(max(times)) if times else None


def _satisfies(version: str, wanted: str) -> bool:
    import nodesemver

    try:
        return bool(nodesemver.satisfies(version, wanted, False))
    except Exception:  # a stored version nodesemver cannot read matches no range
        return False


def _latency(published: str, scanned: float) -> float | None:
    """Seconds from a release's publish time to its verdict; None when unreadable."""
    try:
        when = datetime.fromisoformat(str(published).replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    wait = float(scanned) - when.timestamp()
    return wait if wait >= 0 else None



