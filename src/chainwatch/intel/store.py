"""The known-bad store: OSV records (MAL-…, GHSA-…, ours) in SQLite or PostgreSQL.

SQLAlchemy 2 Core: a SQLite file in the user data dir by default (WAL), any database URL for
teams. Exact versions are indexed by (package, version); ranges are kept per package and checked
with semver precedence (``introduced: "0"`` means every version).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    delete,
    func,
    insert,
    select,
)

from chainwatch.db import connect, metadata
from chainwatch.intel.base import VERDICT_SOURCE

# re-exported: they live in views.py so that a gate with no database imports no SQLAlchemy
from chainwatch.intel.views import CombinedKnownBad as CombinedKnownBad
from chainwatch.intel.views import package_view as package_view
from chainwatch.intel.views import package_views as package_views
from chainwatch.model import Advisory, Level, Verdict
from chainwatch.versions import parse, precedence

#: Package names per query when many packages' advisories are read at once.
VIEW_BATCH = 500

advisories = Table(
    "advisories", metadata,
    Column("id", String(128), primary_key=True),
    Column("source", String(64), nullable=False),
    Column("summary", Text, nullable=False, default=""),
    Column("published", String(40)),
    Column("modified", String(40)),
    Column("withdrawn", String(40)),
    Column("aliases", Text, nullable=False, default="[]"),
    Column("references", Text, nullable=False, default="[]"),
)
affected = Table(
    "affected", metadata,
    Column("pk", Integer, primary_key=True, autoincrement=True),
    Column("advisory_id", String(128), ForeignKey("advisories.id", ondelete="CASCADE"),
           nullable=False),
    Column("package", String(256), nullable=False),
    Column("version", String(128)),  # an exact version, or NULL for a range row
    Column("introduced", String(128)),
    Column("fixed", String(128)),
    Column("last_affected", String(128)),
    Column("all_versions", Boolean, nullable=False, default=False),
    Index("ix_affected_package_version", "package", "version"),
)


# -- reading OSV ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Record:
    advisory: dict[str, Any]
    affected: list[dict[str, Any]]


def parse_osv(doc: dict[str, Any], source: str) -> Record | None:
    """The npm part of one OSV record, or None when it names no npm package."""
    rows: list[dict[str, Any]] = []
    rid = str(doc.get("id") or "")
    if not rid:
        return None
    for entry in doc.get("affected") or []:
        pkg = entry.get("package") or {}
        if str(pkg.get("ecosystem", "")).lower() != "npm" or not pkg.get("name"):
            continue
        name = str(pkg["name"])
        for version in entry.get("versions") or []:
            rows.append({"advisory_id": rid, "package": name, "version": str(version)})
        for rng in entry.get("ranges") or []:
            if rng.get("type") not in ("SEMVER", "ECOSYSTEM"):
                continue
            introduced: str | None = None
            for ev in rng.get("events") or []:
                if "introduced" in ev:
                    introduced = str(ev["introduced"])
                elif introduced is not None and ("fixed" in ev or "last_affected" in ev):
                    rows.append({"advisory_id": rid, "package": name, "version": None,
                                 "introduced": introduced, "fixed": ev.get("fixed"),
                                 "last_affected": ev.get("last_affected"),
                                 "all_versions": False})
                    introduced = None
            if introduced is not None:  # open-ended: introduced "0" means every version
                rows.append({"advisory_id": rid, "package": name, "version": None,
                             "introduced": introduced, "fixed": None, "last_affected": None,
                             "all_versions": introduced == "0"})
    if not rows:
        return None
    refs = [r.get("url") for r in doc.get("references") or [] if isinstance(r, dict)]
    return Record({
        "id": rid, "source": source, "summary": str(doc.get("summary") or doc.get("details") or "")[:2000],
        "published": doc.get("published"), "modified": doc.get("modified"),
        "withdrawn": doc.get("withdrawn"), "aliases": json.dumps(doc.get("aliases") or []),
        "references": json.dumps([r for r in refs if r]),
    }, rows)


def read_osv(paths: Iterable[Path]) -> Iterator[tuple[str, dict[str, Any] | None, str | None]]:
    """(origin, document or None, error) for every OSV JSON in zips, trees and files."""
    import zipfile

    for path in paths:
        if path.suffix == ".zip" and path.is_file():
            try:
                archive = zipfile.ZipFile(path)
            except (OSError, zipfile.BadZipFile) as exc:
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
                yield str(path), None, f"not a readable zip: {reason}"
                continue
            with archive:
                for info in archive.infolist():
                    if info.filename.endswith(".json") and info.file_size < 16 * 1024 * 1024:
                        yield _parsed(f"{path}!{info.filename}", archive.read(info))
            continue
        files = sorted(path.rglob("*.json")) if path.is_dir() else [path]
        for file in files:
            try:
                data = file.read_bytes()
            except OSError as exc:
                yield str(file), None, f"cannot read: {exc.strerror or exc}"
                continue
            yield _parsed(str(file), data)


def _parsed(origin: str, data: bytes) -> tuple[str, dict[str, Any] | None, str | None]:
    try:
        doc = json.loads(data)
    except ValueError as exc:
        return origin, None, f"not valid JSON: {exc}"
    return (origin, doc, None) if isinstance(doc, dict) else (origin, None, "not an OSV object")


# -- the store ----------------------------------------------------------------------------------
def verdict_record_id(name: str, version: str) -> str:
    """The id of chainwatch's own known-bad record of a registry release."""
    return f"CW-VERDICT-{name}@{version}"



class KnownBadStore:
    """Known-bad lookups and imports against one database."""

    def __init__(self, url: str | None = None) -> None:
        self.engine = connect(url)
        #: bumped by every write through this object, so that a reader holding views of the
        #: store in memory (the proxy) drops them at once; writes by other processes are seen
        #: when such views expire
        self.generation = 0

    def import_records(self, records: Iterable[Record], batch: int = 5000) -> int:
        """Insert or replace records (a re-import updates, never duplicates). Returns count."""
        count = 0
        pending: list[Record] = []
        with self.engine.begin() as conn:
            if self.engine.dialect.name == "sqlite":
                conn.exec_driver_sql("PRAGMA synchronous=OFF")
            for record in records:
                pending.append(record)
                if len(pending) >= batch:
                    count += self._flush(conn, pending)
                    pending = []
            count += self._flush(conn, pending)
        self.generation += 1
        return count

    @staticmethod
    def _flush(conn: Any, records: list[Record]) -> int:
        if not records:
            return 0
        ids = [r.advisory["id"] for r in records]
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            conn.execute(delete(affected).where(affected.c.advisory_id.in_(chunk)))
            conn.execute(delete(advisories).where(advisories.c.id.in_(chunk)))
        unique = {r.advisory["id"]: r for r in records}
        conn.execute(insert(advisories), [r.advisory for r in unique.values()])
        rows = [{"version": None, "introduced": None, "fixed": None, "last_affected": None,
                 "all_versions": False, **row} for r in unique.values() for row in r.affected]
        conn.execute(insert(affected), rows)
        return len(unique)

    def remember(self, verdict: Verdict) -> str | None:
        """Store a malicious verdict as a known-bad record of chainwatch's own; its id.

        The record names a registry ``name@version``: callers store only verdicts that speak
        for the registry's release (``verdicts.registry_match``). Its summary is built from the
        verdict's own evidence, never from an earlier record, so a re-scan replaces it with
        the same text instead of nesting the old summary inside the new one."""
        if verdict.level is not Level.MALICIOUS:
            return None
        ref = verdict.target
        rid = verdict_record_id(ref.name, ref.version)
        evidence = [f for f in verdict.findings if f.rule != "CW-KNOWN-BAD"]
        top = evidence[0].message if evidence else ""
        summary = verdict.explanation if not top or top in verdict.explanation else (
            f"{verdict.explanation}. {top}")
        self.import_records([Record(
            {"id": rid, "source": VERDICT_SOURCE, "summary": summary[:2000],
             "published": datetime.now(UTC).isoformat(timespec="seconds"), "modified": None,
             "withdrawn": None, "aliases": "[]",
             "references": json.dumps([f"integrity:{verdict.integrity}"]
                                      if verdict.integrity else [])},
            [{"advisory_id": rid, "package": ref.name, "version": ref.version}])])
        return rid

    def forget(self, name: str, version: str) -> list[str]:
        """Delete chainwatch's own known-bad record of name@version; the ids deleted."""
        rid = verdict_record_id(name, version)
        with self.engine.begin() as conn:
            found = conn.execute(select(advisories.c.id).where(advisories.c.id == rid)
                                 .where(advisories.c.source == VERDICT_SOURCE)).scalars().all()
            if found:
                conn.execute(delete(affected).where(affected.c.advisory_id == rid))
                conn.execute(delete(advisories).where(advisories.c.id == rid))
        self.generation += 1
        return list(found)

    def remove_advisory(self, rid: str) -> list[tuple[str, str | None]]:
        """Delete one advisory (imported or chainwatch's own) by its id; the package and
        version (None: a range) rows it named, empty when there was no such advisory."""
        with self.engine.begin() as conn:
            if conn.execute(select(advisories.c.id).where(advisories.c.id == rid)).first() is None:
                return []
            named = [(r[0], r[1]) for r in conn.execute(
                select(affected.c.package, affected.c.version)
                .where(affected.c.advisory_id == rid)).all()]
            conn.execute(delete(affected).where(affected.c.advisory_id == rid))
            conn.execute(delete(advisories).where(advisories.c.id == rid))
        self.generation += 1
        return named or [("", None)]

    def own_records(self, package: str | None = None) -> list[dict[str, Any]]:
        """chainwatch's own known-bad records (from malicious verdicts), with what they name."""
        query = (select(advisories.c.id, advisories.c.summary, advisories.c.published,
                        advisories.c.references, affected.c.package, affected.c.version)
                 .join(affected, affected.c.advisory_id == advisories.c.id)
                 .where(advisories.c.source == VERDICT_SOURCE).order_by(advisories.c.id))
        if package:
            query = query.where(affected.c.package == package)
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [{**dict(r), "references": json.loads(r["references"] or "[]")} for r in rows]

    def lookup(self, name: str, version: str) -> list[Advisory]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(affected, advisories)
                .join(advisories, advisories.c.id == affected.c.advisory_id)
                .where(affected.c.package == name)
                .where(advisories.c.withdrawn.is_(None))
                .where((affected.c.version == version) | affected.c.version.is_(None))
            ).mappings().all()
        return KnownBadView(name, [dict(r) for r in rows]).lookup(version)

    def package_view(self, name: str) -> KnownBadView:
        """Every advisory row for one package, read in one query, then matched in memory."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(affected, advisories)
                .join(advisories, advisories.c.id == affected.c.advisory_id)
                .where(affected.c.package == name)
                .where(advisories.c.withdrawn.is_(None))).mappings().all()
        return KnownBadView(name, [dict(r) for r in rows])

    def package_views(self, names: Iterable[str]) -> dict[str, KnownBadView]:
        """``package_view`` for many packages in a few queries (VIEW_BATCH names each): an
        environment of 20,000 packages asked 20,000 queries (7 s)."""
        wanted = sorted(set(names))
        rows: dict[str, list[dict[str, Any]]] = {name: [] for name in wanted}
        with self.engine.connect() as conn:
            for start in range(0, len(wanted), VIEW_BATCH):
                for r in conn.execute(
                        select(affected, advisories)
                        .join(advisories, advisories.c.id == affected.c.advisory_id)
                        .where(affected.c.package.in_(wanted[start:start + VIEW_BATCH]))
                        .where(advisories.c.withdrawn.is_(None))).mappings():
                    rows[r["package"]].append(dict(r))
        return {name: KnownBadView(name, found) for name, found in rows.items()}

    def count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(advisories)).scalar_one())


class KnownBadView:
    """The advisories of one package, for asking about many of its versions cheaply."""

    def __init__(self, name: str, rows: list[dict[str, Any]]) -> None:
        self.name = name
        self.exact: dict[str, list[dict[str, Any]]] = {}
        self.ranges: list[dict[str, Any]] = []
        for row in rows:
            if row["version"] is None:
                self.ranges.append(row)
            else:
                self.exact.setdefault(row["version"], []).append(row)

    def lookup(self, version: str) -> list[Advisory]:
        found: dict[str, Advisory] = {}
        for row in [*self.exact.get(version, ()), *self.ranges]:
            if row["version"] is None and not _in_range(version, row):
                continue
            found.setdefault(row["advisory_id"], Advisory(
                id=row["advisory_id"], package=self.name, versions=(version,),
                summary=row["summary"], source=row["source"],
                references=tuple(json.loads(row["references"] or "[]")),
                aliases=tuple(json.loads(row["aliases"] or "[]")), published=row["published"]))
        return list(found.values())


def _in_range(version: str, row: Any) -> bool:
    if row["all_versions"]:
        return True
    v = parse(version)
    if v is None:
        return False
    key = precedence(v)
    low = parse(row["introduced"] or "0") if row["introduced"] not in (None, "0") else None
    if low is not None and key < precedence(low):
        return False
    if row["fixed"]:
        fixed = parse(row["fixed"])
        return fixed is None or key < precedence(fixed)
    if row["last_affected"]:
        last = parse(row["last_affected"])
        return last is None or key <= precedence(last)
    return True
