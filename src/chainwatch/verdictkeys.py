"""The key a registry release's verdict is stored under (kept apart from ``verdicts.py`` so that
asking for a key loads no database code)."""

from __future__ import annotations


def verdict_key(name: str, version: str, integrity: str | None) -> str:
    """The key of a registry release: its integrity, or name@version when it has none."""
    return integrity or f"{name}@{version}"
