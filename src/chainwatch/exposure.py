"""Exposure: which environments hold known-bad versions, and through which dependencies."""

from __future__ import annotations

from dataclasses import dataclass

from chainwatch.intel.base import KnownBadSource
from chainwatch.intel.store import package_views
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
    # a declared range is not an installed version
    installed = [package for package in env.packages if package.exact]
    views = package_views(known_bad, (package.name for package in installed))
    for package in installed:
        advisories = views[package.name].lookup(package.version)
        if advisories:
            hits.append(Hit(package, tuple(advisories)))
    return Exposure(env, tuple(hits))
