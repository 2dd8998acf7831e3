"""The value objects that flow between chainwatch's parts (see DESIGN.md)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chainwatch.manifest import Manifest


class Severity(StrEnum):
    INFO = "info"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self]


_SEVERITY_RANK = {
    Severity.INFO: 0,
    Severity.LOW: 1,
    Severity.MEDIUM: 2,
    Severity.HIGH: 3,
    Severity.CRITICAL: 4,
}


class Level(StrEnum):
    BENIGN = "benign"
    SUSPICIOUS = "suspicious"
    MALICIOUS = "malicious"

    @property
    def rank(self) -> int:
        return [Level.BENIGN, Level.SUSPICIOUS, Level.MALICIOUS].index(self)


@dataclass(frozen=True, order=True)
class PackageRef:
    """A package name (scoped names kept whole) and an exact version."""

    name: str
    version: str

    def __str__(self) -> str:
        return f"{self.name}@{self.version}"

    @classmethod
    def parse(cls, spec: str) -> PackageRef:
        """Parse ``name@version`` or ``@scope/name@version``."""
        at = spec.rfind("@")
        if at <= 0:
            raise ValueError(f"expected name@version, got {spec!r}")
        name, version = spec[:at], spec[at + 1 :]
        if not name or not version:
            raise ValueError(f"expected name@version, got {spec!r}")
        return cls(name, version)


@dataclass(frozen=True)
class Release:
    """A package version and what the registry says of it."""

    ref: PackageRef
    published: str | None = None
    publisher: str | None = None
    publisher_email: str | None = None
    maintainers: tuple[str, ...] = ()
    integrity: str | None = None
    shasum: str | None = None
    tarball_url: str | None = None
    has_provenance: bool = False
    has_signatures: bool = False
    trusted_publisher: bool = False
    scripts: dict[str, str] = field(default_factory=dict)
    dependencies: dict[str, str] = field(default_factory=dict)
    git_head: str | None = None
    manifest: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PackageFile:
    """One regular file of a package, held in memory."""

    path: str
    data: bytes
    mode: int = 0o644

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    def text(self) -> str:
        return self.data.decode("utf-8", errors="replace")


@dataclass(frozen=True)
class Finding:
    """One piece of evidence: which rule fired, where, and on what."""

    rule: str
    severity: Severity
    technique: str
    capability: str
    message: str
    file: str | None = None
    line: int | None = None
    snippet: str | None = None
    reference: str | None = None
    #: True when the same capability was already present in the baseline.
    preexisting: bool = False
    #: True when the file is run by an install-time lifecycle script.
    install_time: bool = False
    #: The place as the normalised view reads it (constants folded, ``global['ev'+'al']`` →
    #: ``global.eval``), when the finding was seen only there; ``snippet`` is the file's own text.
    normalized: str | None = None

    @property
    def where(self) -> str:
        """Where a reader checks it: ``file:line``, the file, ``sandbox`` for what the
        release did when run (CW-DYN-*), else ``registry`` (metadata and release signals)."""
        if self.file:
            return f"{self.file}:{self.line}" if self.line else self.file
        return "sandbox" if self.rule.startswith("CW-DYN-") else "registry"

    def to_dict(self) -> dict[str, Any]:
        out = self._fields()
        if self.normalized is not None:
            out["normalized"] = self.normalized
        return out

    def _fields(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "severity": self.severity.value,
            "technique": self.technique,
            "capability": self.capability,
            "message": self.message,
            "file": self.file,
            "line": self.line,
            "snippet": self.snippet,
            "reference": self.reference,
            "preexisting": self.preexisting,
            "install_time": self.install_time,
        }


@dataclass(frozen=True)
class PackageFiles:
    """The files of one package (tarball or folder), read under limits."""

    source: str
    files: tuple[PackageFile, ...]
    #: Problems met while reading (unsafe entries, limits hit): findings, never followed.
    findings: tuple[Finding, ...] = ()
    sha512: str | None = None

    def by_path(self) -> dict[str, PackageFile]:
        return {f.path: f for f in self.files}

    def get(self, path: str) -> PackageFile | None:
        for f in self.files:
            if f.path == path:
                return f
        return None

    @property
    def total_bytes(self) -> int:
        return sum(len(f.data) for f in self.files)

    @cached_property
    def manifest(self) -> Manifest:
        """The package's own package.json, parsed once (limits and types in
        :mod:`chainwatch.manifest`); raises ``ManifestError`` when it cannot be read."""
        from chainwatch.manifest import NO_MANIFEST, parse_manifest

        file = self.get("package.json")
        return parse_manifest(file.data) if file is not None else NO_MANIFEST


@dataclass(frozen=True)
class FileChanges:
    added: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    unchanged: int = 0


@dataclass(frozen=True)
class Changes:
    """What changed between the baseline and the release under analysis."""

    files: FileChanges
    dependencies_added: dict[str, str] = field(default_factory=dict)
    dependencies_removed: dict[str, str] = field(default_factory=dict)
    scripts_added: dict[str, str] = field(default_factory=dict)
    scripts_changed: dict[str, str] = field(default_factory=dict)
    capabilities_added: tuple[str, ...] = ()
    capabilities_removed: tuple[str, ...] = ()


@dataclass(frozen=True)
class DynamicEvent:
    """One thing a release did in the sandbox (``scan --sandbox``)."""

    kind: str  # file | write | net | dns | exec | hook | env | eval | limit | tamper
    detail: str
    phase: str

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "detail": self.detail, "phase": self.phase}


@dataclass(frozen=True)
class Dynamic:
    """The outcome of dynamic analysis; ``ran`` is False (with the reason) when it could not."""

    ran: bool
    seconds: float = 0.0
    reason: str = ""
    events: tuple[DynamicEvent, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"ran": self.ran, "seconds": self.seconds, "reason": self.reason,
                "events": [e.to_dict() for e in self.events]}


@dataclass(frozen=True)
class Verdict:
    """The outcome of analysing one release, always with its evidence."""

    target: PackageRef
    level: Level
    score: int
    explanation: str
    findings: tuple[Finding, ...]
    capabilities: tuple[str, ...]
    baseline: PackageRef | None = None
    changes: Changes | None = None
    metadata_signals: tuple[Finding, ...] = ()
    source: str = ""
    integrity: str | None = None
    elapsed_s: float = 0.0
    bytes_scanned: int = 0
    #: who published it and when, as the registry says (None for local files)
    publisher: str | None = None
    published: str | None = None
    #: hashes of the normalised added code of flagged files, and the indicators in it
    fingerprints: tuple[str, ...] = ()
    indicators: dict[str, list[str]] = field(default_factory=dict)
    #: where the analysed bytes came from: "registry" (fetched for this name@version),
    #: "tarball" or "folder" (local; their package.json's name@version is only a claim)
    origin: str = "registry"
    #: for a local folder, a digest of its files (it has no tarball integrity)
    content_digest: str | None = None
    #: what the release did in the sandbox, when dynamic analysis was asked for
    dynamic: Dynamic | None = None
    #: the baseline was chosen by the user (``scan --against``, ``none`` included), not the
    #: registry history the gate and the watcher judge by: such a verdict never replaces or
    #: weakens one in verdict memory (see ``verdicts.VerdictStore.keep``)
    baseline_chosen: bool = False


@dataclass(frozen=True)
class Advisory:
    """A record saying that versions of a package are malicious (MAL-…, GHSA-…, or ours)."""

    id: str
    package: str
    versions: tuple[str, ...]
    summary: str = ""
    source: str = ""
    references: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    published: str | None = None


@dataclass(frozen=True)
class InstalledPackage:
    """One resolved package in an environment, with how it got there."""

    name: str
    version: str
    dev: bool = False
    optional: bool = False
    resolved: str | None = None
    integrity: str | None = None
    #: Dependency paths, each a tuple of names from a root or importer down to this package.
    paths: tuple[tuple[str, ...], ...] = ()
    #: True when paths were left out (more than the cap) or cut in length (``…`` in a path).
    paths_cut: bool = False
    #: False for declared ranges that no lockfile resolved (package.json alone).
    exact: bool = True


@dataclass(frozen=True)
class Environment:
    """One place that holds packages: a lockfile, a node_modules tree, an SBOM, an image."""

    id: str
    kind: str
    source: str
    packages: tuple[InstalledPackage, ...]
    errors: tuple[str, ...] = ()
    #: The dependency graph by ``name@version``: each package's direct dependencies.
    edges: tuple[tuple[str, tuple[str, ...]], ...] = ()
    #: Each importer (the root project, a workspace) and its direct dependencies (``name@version``).
    importers: tuple[tuple[str, tuple[str, ...]], ...] = ()
    #: The importer that is the project itself, when the format tells (else None).
    root: str | None = None
