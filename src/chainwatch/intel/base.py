"""The interface every known-bad source implements (built-in list, OSV database, …)."""

from __future__ import annotations

from typing import Protocol

from chainwatch.model import Advisory

#: The source of the known-bad records chainwatch writes itself from malicious verdicts.
VERDICT_SOURCE = "chainwatch verdict"


class KnownBadSource(Protocol):
    def lookup(self, name: str, version: str) -> list[Advisory]:
        """Advisories that name this exact version as malicious."""
        ...
