"""Exposure: which environments hold known-bad versions, and through which dependencies."""

from __future__ import annotations

from dataclasses import dataclass

from chainwatch.intel.base import KnownBadSource
from chainwatch.model import Advisory, Environment, InstalledPackage


@dataclass(frozen=True)
class Hit:
    package: InstalledPackage
    advisories: tuple[Advisory, ...]


@dataclass(frozen=True)
class Exposure:
    environment: Environment
    hits: tuple[Hit, ...]


def expose(env: Environment, known_bad: KnownBadSource) -> Exposure:
    hits = []
    for package in env.packages:
        if not package.exact:
            continue  # a declared range is not an installed version
        advisories = known_bad.lookup(package.name, package.version)
        if advisories:
            hits.append(Hit(package, tuple(advisories)))
    return Exposure(env, tuple(hits))
