"""Bounds on what one package may make chainwatch read."""

from __future__ import annotations

from dataclasses import dataclass

from chainwatch.model import Finding, Severity


@dataclass(frozen=True)
class Limits:
    max_entries: int = 100_000
    max_file_bytes: int = 64 * 1024 * 1024
    max_total_bytes: int = 512 * 1024 * 1024
    #: Unpacked/packed ratio above which a large archive is treated as a bomb.
    max_ratio: float = 200.0
    #: The ratio is only checked once this much has been unpacked.
    ratio_floor_bytes: int = 16 * 1024 * 1024


def archive_finding(rule: str, message: str, path: str | None = None,
                    severity: Severity = Severity.HIGH) -> Finding:
    """A finding about the archive itself (unsafe entries, limits hit)."""
    return Finding(
        rule=rule,
        severity=severity,
        technique="archive-tampering",
        capability="archive-anomaly",
        message=message,
        file=path,
    )
