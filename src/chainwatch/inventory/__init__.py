"""Inventory: every package an environment holds, with how it got there.

One walker (``walk.py``) visits the files; each parser (one module per format) says which
files it wants and parses the bytes it is handed, the way osv-scalibr's extractors do.
"""

from chainwatch.inventory.base import Extractor, InventoryError
from chainwatch.inventory.bun_lock import BunLockExtractor
from chainwatch.inventory.npm_lock import NpmLockExtractor
from chainwatch.inventory.package_json import PackageJsonExtractor
from chainwatch.inventory.pnpm_lock import PnpmLockExtractor
from chainwatch.inventory.sbom import SbomExtractor
from chainwatch.inventory.yarn_berry import YarnBerryExtractor

EXTRACTORS: tuple[Extractor, ...] = (
    NpmLockExtractor(), YarnBerryExtractor(), PnpmLockExtractor(), BunLockExtractor(),
    PackageJsonExtractor(), SbomExtractor(),
)

__all__ = ["EXTRACTORS", "Extractor", "InventoryError"]
