"""Where chainwatch keeps its cache and data by default."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs


def cache_dir(override: str | os.PathLike[str] | None = None) -> Path:
    if override:
        return Path(override)
    env = os.environ.get("CHAINWATCH_CACHE_DIR")
    if env:
        return Path(env)
    return Path(platformdirs.user_cache_dir("chainwatch"))


def data_dir() -> Path:
    env = os.environ.get("CHAINWATCH_DATA_DIR")
    if env:
        return Path(env)
    return Path(platformdirs.user_data_dir("chainwatch"))
