"""What an incident is made of: observations (one flagged release each) and their grouping."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from chainwatch.analysis.metadata import parse_time


@dataclass(frozen=True)
class Observation:
    """One flagged release, from a stored verdict, a scan JSON document or a known-bad record."""

    package: str
    version: str
    level: str  # malicious | suspicious
    source: str  # verdict | known-bad
    publisher: str | None = None
    published: str | None = None
    integrity: str | None = None
    score: int = 0
    explanation: str = ""
    baseline: str | None = None
    findings: tuple[dict[str, Any], ...] = ()
    signals: tuple[dict[str, Any], ...] = ()
    capabilities_added: tuple[str, ...] = ()
    fingerprints: tuple[str, ...] = ()
    indicators: dict[str, list[str]] = field(default_factory=dict)
    advisories: tuple[str, ...] = ()
    detected_at: str | None = None
    #: the scan document it was read from (None for a known-bad record)
    document: dict[str, Any] | None = field(default=None, compare=False, repr=False)

    @property
    def key(self) -> str:
        return f"{self.package}@{self.version}"

    @property
    def when(self) -> datetime | None:
        return parse_time(self.published)

    @property
    def techniques(self) -> set[str]:
        return {str(f.get("technique")) for f in self.findings
                if f.get("technique") and not f.get("preexisting")}

    @property
    def signal_rules(self) -> set[str]:
        return {str(s.get("rule")) for s in self.signals}

    @classmethod
    def from_scan(cls, doc: dict[str, Any], detected_at: str | None = None) -> Observation:
        """From a ``chainwatch.scan/1`` document (``scan --format json``, verdict memory)."""
        payload = doc.get("payload") or {}
        return cls(
            package=str(doc["package"]), version=str(doc["version"]),
            level=str(doc.get("verdict")), source="verdict",
            publisher=doc.get("publisher"), published=doc.get("published"),
            integrity=doc.get("integrity"), score=int(doc.get("score") or 0),
            explanation=str(doc.get("explanation") or ""), baseline=doc.get("baseline"),
            findings=tuple(doc.get("findings") or ()),
            signals=tuple(doc.get("metadata_signals") or ()),
            capabilities_added=tuple((doc.get("capabilities") or {}).get("added") or ()),
            fingerprints=tuple(payload.get("fingerprints") or ()),
            indicators=dict(payload.get("indicators") or {}),
            detected_at=detected_at, document=doc)


@dataclass
class Incident:
    id: str
    members: list[Observation]

    @property
    def packages(self) -> list[str]:
        return sorted({m.package for m in self.members})

    @property
    def publishers(self) -> list[str]:
        return sorted({m.publisher for m in self.members if m.publisher})

    @property
    def level(self) -> str:
        return "malicious" if any(m.level == "malicious" for m in self.members) else "suspicious"

    def indicators(self) -> dict[str, list[str]]:
        merged: dict[str, set[str]] = {}
        for m in self.members:
            for kind, values in m.indicators.items():
                merged.setdefault(kind, set()).update(values)
        return {k: sorted(v) for k, v in sorted(merged.items())}

    @property
    def first_published(self) -> datetime | None:
        times = [t for m in self.members if (t := m.when) is not None]
        return min(times) if times else None

    @property
    def last_published(self) -> datetime | None:
        times = [t for m in self.members if (t := m.when) is not None]
        return max(times) if times else None

    @property
    def title(self) -> str:
        who = f" by {', '.join(self.publishers)}" if self.publishers else ""
        n = len(self.packages)
        releases = "release" if len(self.members) == 1 else "releases"
        return (f"{self.level.capitalize()} {releases} of {n} package{'s' if n != 1 else ''}"
                f"{who}: {', '.join(self.packages[:5])}{' …' if n > 5 else ''}")
