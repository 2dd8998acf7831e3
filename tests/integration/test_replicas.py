"""Inert replicas of real incidents, injected into a benign host package, must be caught."""

from __future__ import annotations

import json

import pytest
from bench.corpus.replica import Spec, inject, specs

from chainwatch.model import Level, PackageRef
from chainwatch.scan import Loaded, Scanner, scan_snippet_files
from tests.helpers import BENIGN_INDEX

SPECS = specs()
SCANNER = Scanner(None, workers=1)
HOST = {"package.json": json.dumps({"name": "left-padder", "version": "1.0.0",
                                    "main": "index.js", "description": "pad strings"}).encode(),
        "index.js": BENIGN_INDEX.encode()}


def _loaded(files: dict[str, bytes]) -> Loaded:
    manifest = json.loads(files["package.json"])
    return Loaded(PackageRef(manifest["name"], manifest["version"]), scan_snippet_files(files))


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_replica_is_caught(spec: Spec) -> None:
    verdict = SCANNER.analyze(_loaded(inject(HOST, spec)), _loaded(HOST))
    assert verdict.level is Level(spec.expect), (verdict.explanation,
                                                 [f.rule for f in verdict.findings[:6]])
    top = verdict.findings[0]
    assert top.technique in spec.top_technique, (top.rule, top.technique)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_replica_alone_is_flagged(spec: Spec) -> None:
    """The same code as a brand-new package (no baseline) is flagged too."""
    assert SCANNER.analyze(_loaded(inject(HOST, spec)), None).level is not Level.BENIGN


def test_replicas_cover_the_issue_incidents() -> None:
    names = {s.name for s in SPECS}
    assert {"qix", "duckdb", "shai-hulud", "shai-hulud-2", "s1ngularity", "event-stream",
            "ua-parser-miner", "eslint-scope", "solana-web3", "node-ipc", "coa-dll",
            "lottie-drainer", "dependency-confusion", "token-grabber"} <= names
