"""Incidents in the database, rebuilt from verdict memory (and the watcher's publisher data).

``rebuild`` groups every stored suspicious or malicious verdict of a registry release (never one
of local files: see LOCAL_ORIGINS), attaches known-bad records that
name the same releases, and writes the incidents table (one row per incident; ids are stable as
members join).
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Column, Engine, Integer, String, Table, Text, delete, insert, select

from chainwatch.db import connect, metadata
from chainwatch.errors import UsageError
from chainwatch.incidents.ach import assess
from chainwatch.incidents.cluster import cluster
from chainwatch.incidents.model import Incident, Observation
from chainwatch.intel.base import KnownBadSource
from chainwatch.model import Level
from chainwatch.output.jsonout import scan_documents

if TYPE_CHECKING:
    from chainwatch.verdicts import StoredVerdict

incidents = Table(
    "incidents", metadata,
    Column("id", String(64), primary_key=True),
    Column("title", Text, nullable=False),
    Column("level", String(16), nullable=False),
    Column("size", Integer, nullable=False),
    Column("first_published", String(40)),
    Column("last_published", String(40)),
    Column("hypothesis", String(8), nullable=False),
    Column("confidence", String(16), nullable=False),
    Column("members", Text, nullable=False),
    Column("updated_at", String(40), nullable=False),
)


#: the origins of local files (an upload, a tarball, a folder)
LOCAL_ORIGINS = ("tarball", "folder")


def speaks_for_registry(v: StoredVerdict) -> bool:
    """Whether a stored verdict may name its registry release in an incident (which says that
    release is compromised). A local file's package.json name@version is only a claim, so a
    verdict of local files joins no incident unless its bytes were the registry's: a local
    tarball is judged against its registry history (a baseline it did not choose) only when
    its sha512 equals the registry's for that release (``Scanner.registry_twin``; the same
    test as ``verdicts.registry_match``). A verdict stored before origins were recorded
    ("unknown") keeps counting, as it did."""
    if v.origin not in LOCAL_ORIGINS:
        return True
    return v.origin == "tarball" and v.baseline is not None and not v.baseline_chosen


def observations_from_db(engine: Engine, known_bad: KnownBadSource | None = None,
                         limit: int = 100_000) -> list[Observation]:
    from chainwatch.verdicts import VerdictStore
    from chainwatch.watch.state import versions

    stored = VerdictStore(engine=engine).recent(limit, levels=(Level.SUSPICIOUS, Level.MALICIOUS))
    with engine.connect() as conn:
        # only scanned releases can have a verdict: the baseline rows (most of them) never do
        seen = {(r[0], r[1]): (r[2], r[3]) for r in conn.execute(select(
            versions.c.name, versions.c.version, versions.c.publisher, versions.c.published)
            .where(versions.c.status != "baseline"))}
    out = []
    for v in stored:
        if not speaks_for_registry(v):
            continue  # local files: their package.json's name@version is only a claim
        obs = Observation.from_scan(v.document, detected_at=v.scanned_at)
        publisher, published = seen.get((v.package, v.version), (None, None))
        obs = replace(obs, publisher=obs.publisher or publisher,
                      published=obs.published or published)
        out.append(_with_advisories(obs, known_bad))
    if known_bad is not None:
        scanned = {o.key for o in out}
        out += [o for o in observations_from_fleet(engine, known_bad) if o.key not in scanned]
    return out


def observations_from_fleet(engine: Engine, known_bad: KnownBadSource) -> list[Observation]:
    """Known-bad versions that recorded environments held: each one an observation, so a
    campaign that reached the fleet is an incident even where chainwatch scanned nothing."""
    from chainwatch.fleet import holdings
    from chainwatch.intel.store import package_view

    with engine.connect() as conn:
        held = conn.execute(select(holdings.c.name, holdings.c.version).distinct()).all()
    by_name: dict[str, set[str]] = {}
    for name, version in held:
        by_name.setdefault(name, set()).add(version)
    out = []
    for name, versions_held in sorted(by_name.items()):
        view = package_view(known_bad, name)
        for version in sorted(versions_held):
            found = [a for a in view.lookup(version) if not a.id.startswith("CW-VERDICT-")]
            if found:
                out.append(Observation(
                    package=name, version=version, level="malicious", source="known-bad",
                    published=found[0].published,
                    explanation="; ".join(f"{a.id}: {a.summary}" for a in found)[:500],
                    advisories=tuple(a.id for a in found)))
    return out


def _with_advisories(obs: Observation, known_bad: KnownBadSource | None) -> Observation:
    if known_bad is None:
        return obs
    ids = tuple(a.id for a in known_bad.lookup(obs.package, obs.version)
                if not a.id.startswith("CW-VERDICT-"))
    return replace(obs, advisories=ids) if ids else obs


def observations_from_files(paths: list[Path],
                            known_bad: KnownBadSource | None = None) -> list[Observation]:
    """From ``scan --format json|jsonl`` output files (benign verdicts are left out)."""
    out = []
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"{path}: cannot read: {exc}") from exc
        try:
            docs: Any = json.loads(text)
        except ValueError:
            try:
                docs = [json.loads(line) for line in text.splitlines() if line.strip()]
            except ValueError as exc:
                raise UsageError(f"{path}: not scan JSON or JSON lines: {exc}") from exc
        try:
            found = list(scan_documents(docs))
        except ValueError as exc:
            raise UsageError(f"{path}: {exc}") from exc
        for doc in found:
            if doc["verdict"] in ("suspicious", "malicious"):
                out.append(_with_advisories(Observation.from_scan(doc), known_bad))
    return out


class IncidentStore:
    def __init__(self, url: str | None = None, engine: Engine | None = None) -> None:
        self.engine = engine or connect(url)

    def rebuild(self, known_bad: KnownBadSource | None = None) -> list[Incident]:
        found = cluster(observations_from_db(self.engine, known_bad))
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        rows = []
        for inc in found:
            a = assess(inc)
            first, last = inc.first_published, inc.last_published
            rows.append({"id": inc.id, "title": inc.title, "level": inc.level,
                         "size": len(inc.members),
                         "first_published": first.isoformat() if first else None,
                         "last_published": last.isoformat() if last else None,
                         "hypothesis": a.best.hypothesis, "confidence": a.confidence,
                         "members": json.dumps([m.key for m in inc.members]),
                         "updated_at": stamp})
        with self.engine.begin() as conn:
            conn.execute(delete(incidents))
            if rows:
                conn.execute(insert(incidents), rows)
        return found

    def listed(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(incidents).order_by(
                incidents.c.first_published.desc())).mappings().all()
        return [{**dict(r), "members": json.loads(r["members"])} for r in rows]
