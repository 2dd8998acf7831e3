"""Inert replicas of real incidents, diffed against a benign baseline, must be caught."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from chainwatch.model import Level, PackageRef
from chainwatch.scan import Loaded, Scanner, scan_snippet_files
from tests.helpers import BENIGN_INDEX, FIXTURES

REPLICAS = sorted((FIXTURES / "replicas").glob("*.yml"))
SCANNER = Scanner(None, workers=1)
BASE_MANIFEST: dict[str, Any] = {"name": "left-padder", "version": "1.0.0", "main": "index.js",
                                 "description": "pad strings on the left"}


def _package(version: str, manifest: dict[str, Any], files: dict[str, str]) -> Loaded:
    content = {"package.json": json.dumps({**manifest, "version": version}, indent=2), **files}
    return Loaded(PackageRef("left-padder", version), scan_snippet_files(content))


def replica(path: Path) -> tuple[dict[str, Any], Loaded, Loaded]:
    label = yaml.safe_load(path.read_text())
    base = _package("1.0.0", BASE_MANIFEST, {"index.js": BENIGN_INDEX})
    target = _package("1.0.1", {**BASE_MANIFEST, **(label.get("manifest") or {})},
                      {"index.js": BENIGN_INDEX, **label["add"]})
    return label, target, base


@pytest.mark.parametrize("path", REPLICAS, ids=lambda p: p.stem)
def test_replica_is_caught(path: Path) -> None:
    label, target, base = replica(path)
    verdict = SCANNER.analyze(target, base)
    assert verdict.level is Level(label["expect"]), (verdict.explanation,
                                                     [f.rule for f in verdict.findings[:6]])
    top = verdict.findings[0]
    assert top.technique in label["top_technique"], (top.rule, top.technique)


@pytest.mark.parametrize("path", REPLICAS, ids=lambda p: p.stem)
def test_replica_alone_is_flagged(path: Path) -> None:
    """The same code as a brand-new package (no baseline) is flagged too."""
    _, target, _ = replica(path)
    assert SCANNER.analyze(target, None).level is not Level.BENIGN


def test_replicas_cover_the_issue_incidents() -> None:
    assert len(REPLICAS) >= 12
