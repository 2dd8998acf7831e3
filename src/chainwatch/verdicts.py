"""Verdict memory: every scan result, keyed by the bytes it judged, so a release is analysed once.

Verdicts are facts about bytes. The gate (``check`` and ``proxy``) asks here by the registry's
integrity before scanning; the watcher stores what it scans. A registry release without an
integrity string is keyed by ``name@version``; a local tarball by its own sha512 and a local
folder by a digest of its files, so what a local package.json claims never stands for the
registry release (see :func:`registry_match` for when it may).
"""

from __future__ import annotations

import getpass
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Column, Engine, Float, Index, Integer, String, Table, Text, delete, select
from sqlalchemy.exc import IntegrityError

from chainwatch.db import connect, metadata
from chainwatch.model import Level, Verdict
from chainwatch.registry.cache import sri_to_hex
from chainwatch.verdictkeys import verdict_key as verdict_key

log = logging.getLogger("chainwatch.verdicts")

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
    # newest first, all or by level (chainwatch serve's lists and overview): bench/serve.py
    Index("ix_verdicts_scanned_at", "scanned_at", "key"),
    Index("ix_verdicts_level_scanned_at", "level", "scanned_at"),
)


#: Every removal, with who asked and why (``chainwatch db verdicts remove --reason``).
removals = Table(
    "verdict_removals", metadata,
    Column("pk", Integer, primary_key=True, autoincrement=True),
    Column("removed_at", String(40), nullable=False),
    Column("target", String(512), nullable=False),
    Column("keys", Text, nullable=False),
    Column("advisories", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("removed_by", String(128), nullable=False),
)


def memory_key(verdict: Verdict) -> str:
    """The key a verdict is stored under: the bytes it judged. Only a registry release may be
    keyed by name@version (when the registry gives no integrity); a local folder is keyed by
    the digest of its files, so it can never answer for a registry lookup."""
    if verdict.integrity:
        return verdict.integrity
    if verdict.origin == "registry":
        return f"{verdict.target.name}@{verdict.target.version}"
    return f"local:{verdict.content_digest or verdict.source}"


@dataclass(frozen=True)
class RegistryMatch:
    """Whether a verdict speaks for the registry's release of the name@version it names."""

    confirmed: bool
    reason: str


def registry_match(verdict: Verdict,
                   packument: Callable[[str], dict[str, Any]] | None) -> RegistryMatch:
    """A registry release speaks for itself; a local tarball only when its sha512 equals the
    registry's ``dist.integrity`` for that version; a local folder never. When the registry
    cannot be asked, the answer is no (a verdict is never promoted on a guess)."""
    if verdict.origin == "registry":
        return RegistryMatch(True, "fetched from the registry")
    if verdict.origin != "tarball" or not verdict.integrity:
        return RegistryMatch(False, f"a local {verdict.origin} has no tarball integrity to "
                                    "compare with the registry's")
    if packument is None:
        return RegistryMatch(False, "no registry to compare its integrity with")
    ref = verdict.target
    try:
        doc = packument(ref.name)
    except Exception as exc:  # unreachable, offline, refused, malformed: not confirmed
        return RegistryMatch(False, "the registry could not confirm it: "
                                    + " ".join(str(exc).split())[:200])
    versions = doc.get("versions") if isinstance(doc, dict) else None
    meta = versions.get(ref.version) if isinstance(versions, dict) else None
    if not isinstance(meta, dict):
        return RegistryMatch(False, f"the registry has no {ref}")
    dist = meta.get("dist")
    theirs = dist.get("integrity") if isinstance(dist, dict) else None
    expected = sri_to_hex(theirs) if isinstance(theirs, str) else None
    if expected is None or expected[0] != "sha512":
        return RegistryMatch(False, f"the registry gives no sha512 integrity for {ref}")
    if sri_to_hex(verdict.integrity) == expected:
        return RegistryMatch(True, f"its sha512 equals the registry's for {ref}")
    return RegistryMatch(False, f"its sha512 differs from the registry's {ref}")


@dataclass(frozen=True)
class StoredVerdict:
    key: str
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

    @property
    def origin(self) -> str:
        """registry, tarball, folder, or unknown (stored before the origin was recorded)."""
        return str(self.document.get("origin") or "unknown")

    @property
    def baseline_chosen(self) -> bool:
        """Judged against a baseline the user chose (``scan --against``), not the registry
        history: any judgement by the registry history replaces it."""
        return self.document.get("baseline_chosen") is True


@dataclass(frozen=True)
class Kept:
    """What ``VerdictStore.keep`` did: ``stored`` is what memory now says of those bytes;
    ``kept`` whether that is the verdict just given; if not, ``why`` in words."""

    stored: StoredVerdict
    kept: bool
    why: str = ""

    def note(self) -> str | None:
        """The one line the CLI and the API give when the verdict was not kept."""
        if self.kept:
            return None
        said = (f"not kept in verdict memory: {self.why}; it still says "
                f"{self.stored.package}@{self.stored.version} is {self.stored.summary}")
        return " ".join(said.split())[:600]  # the stored message is the package author's text


def _stored(row: Any) -> StoredVerdict:
    return StoredVerdict(
        key=row["key"], package=row["package"], version=row["version"], integrity=row["integrity"],
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
        "key": memory_key(verdict),
        "package": ref.name, "version": ref.version, "integrity": verdict.integrity,
        "level": verdict.level.value, "score": verdict.score,
        "baseline": verdict.baseline.version if verdict.baseline else None,
        "explanation": verdict.explanation[:4000],
        "top_rule": top.rule if top else None,
        "top_message": top.message[:1000] if top else None,
        "scanned_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "elapsed_s": verdict.elapsed_s,
        "document": json.dumps({**verdict_dict(verdict), "baseline_chosen": True}
                               if verdict.baseline_chosen else verdict_dict(verdict)),
    }


def stored_from_verdict(verdict: Verdict) -> StoredVerdict:
    """The stored form of a verdict, for callers without a database."""
    return _stored(_row(verdict))


def _who() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name in this environment (containers)
        return "unknown"


class VerdictStore:
    def __init__(self, url: str | None = None, engine: Engine | None = None) -> None:
        self.engine = engine or connect(url)

    def get(self, name: str, version: str, integrity: str | None) -> StoredVerdict | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(verdicts).where(
                verdicts.c.key == verdict_key(name, version, integrity))).mappings().first()
        return _stored(row) if row is not None else None

    def put(self, verdict: Verdict) -> StoredVerdict:
        """Store a verdict (see :meth:`keep`); what memory now says of its bytes."""
        return self.keep(verdict).stored

    def keep(self, verdict: Verdict) -> Kept:
        """Store a verdict, benign ones too, under the one rule every caller (scan, serve's
        API, the gate, the watcher) goes through. A key holds one judgement of its bytes:
        the registry history's (the default baseline, as the gate and the watcher judge),
        the newest replacing an older one, except that one made without a baseline never
        replaces one made with (the previous release may have gone since). A verdict made
        against a baseline the user chose (``scan --against``, ``none`` included) is stored
        only where nothing is stored for those bytes: it never replaces nor weakens what
        memory says, else comparing a release with itself would clear its verdict."""
        values = _row(verdict)
        try:
            with self.engine.begin() as conn:
                conn.execute(verdicts.insert().values(**values))
            return Kept(self._stored_now(values["key"]), True)
        except IntegrityError:
            pass
        old = self.by_key(values["key"])
        if old is None:  # removed in between: store it as new
            return self.keep(verdict)
        if verdict.baseline_chosen:
            why = ("it was judged against a baseline chosen with --against, and verdict memory "
                   "already holds a judgement of these bytes (only a scan against the registry "
                   "history replaces it)")
            return Kept(old, False, why)
        if values["baseline"] is None and old.baseline is not None and not old.baseline_chosen:
            return Kept(old, False, "it was judged without a baseline, and the stored one was "
                                    f"judged against {old.baseline}")
        with self.engine.begin() as conn:
            conn.execute(verdicts.update().where(verdicts.c.key == values["key"])
                         .values(**values))
        return Kept(self._stored_now(values["key"]), True)

    def _stored_now(self, key: str) -> StoredVerdict:
        stored = self.by_key(key)
        assert stored is not None
        return stored

    def by_key(self, key: str) -> StoredVerdict | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(verdicts).where(verdicts.c.key == key)).mappings().first()
        return _stored(row) if row is not None else None

    def listed(self, package: str | None = None, limit: int = 1000) -> list[StoredVerdict]:
        """Stored verdicts, newest first, of one package or all."""
        query = select(verdicts).order_by(verdicts.c.scanned_at.desc(), verdicts.c.key)
        if package:
            query = query.where(verdicts.c.package == package)
        with self.engine.connect() as conn:
            rows = conn.execute(query.limit(limit)).mappings().all()
        return [_stored(r) for r in rows]

    def remove(self, target: str, reason: str, forget: Callable[[str, str], list[str]]
               | None = None) -> tuple[list[StoredVerdict], list[str]]:
        """Remove the verdicts ``target`` names (a stored key, or name@version: every verdict
        of that release and chainwatch's known-bad record of it, through ``forget``), and
        record who removed what and why. Returns (verdicts removed, advisories removed)."""
        reason = " ".join(reason.split())
        if not reason:
            raise ValueError("a reason is required")
        found = self.by_key(target)
        gone = [found] if found is not None else []
        advisories: list[str] = []
        if found is None and "@" in target[1:]:
            at = target.rfind("@")
            name, version = target[:at], target[at + 1:]
            gone = [v for v in self.listed(name, limit=100_000) if v.version == version]
            advisories = forget(name, version) if forget is not None else []
        if not gone and not advisories:
            return [], []
        who = _who()
        with self.engine.begin() as conn:
            keys = [v.key for v in gone]
            for start in range(0, len(keys), 500):
                conn.execute(delete(verdicts).where(verdicts.c.key.in_(keys[start:start + 500])))
            conn.execute(removals.insert().values(
                removed_at=datetime.now(UTC).isoformat(timespec="seconds"), target=target,
                keys=json.dumps(keys), advisories=json.dumps(advisories), reason=reason[:2000],
                removed_by=who))
        log.info("verdicts removed by %s: %s (%d stored verdicts, advisories %s): %s",
                    who, target, len(gone), ", ".join(advisories) or "none", reason)
        return gone, advisories

    def note_removal(self, target: str, advisory_ids: list[str], reason: str) -> None:
        """Record that advisories were removed from the known-bad store, by whom and why."""
        with self.engine.begin() as conn:
            conn.execute(removals.insert().values(
                removed_at=datetime.now(UTC).isoformat(timespec="seconds"), target=target,
                keys="[]", advisories=json.dumps(advisory_ids),
                reason=" ".join(reason.split())[:2000], removed_by=_who()))

    def removal_log(self, limit: int = 100) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(removals).order_by(removals.c.pk.desc())
                                .limit(limit)).mappings().all()
        return [{**dict(r), "keys": json.loads(r["keys"]),
                 "advisories": json.loads(r["advisories"])} for r in rows]

    def for_package(self, name: str) -> list[StoredVerdict]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(verdicts).where(verdicts.c.package == name)
                                .order_by(verdicts.c.scanned_at)).mappings().all()
        return [_stored(r) for r in rows]

    def for_packages(self, names: Iterable[str], batch: int = 500) -> dict[str, list[StoredVerdict]]:
        """``for_package`` of many packages in a few queries (``batch`` names each): the gate
        asks this once for a whole lockfile instead of once per package."""
        wanted = sorted(set(names))
        found: dict[str, list[StoredVerdict]] = {name: [] for name in wanted}
        with self.engine.connect() as conn:
            for start in range(0, len(wanted), batch):
                for r in conn.execute(select(verdicts)
                                      .where(verdicts.c.package.in_(wanted[start:start + batch]))
                                      .order_by(verdicts.c.scanned_at)).mappings():
                    found.setdefault(r["package"], []).append(_stored(r))
        return found

    def recent(self, limit: int = 100, levels: tuple[Level, ...] = ()) -> list[StoredVerdict]:
        query = select(verdicts).order_by(verdicts.c.scanned_at.desc()).limit(limit)
        if levels:
            query = query.where(verdicts.c.level.in_([lv.value for lv in levels]))
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [_stored(r) for r in rows]
