"""Issue 13 A's missed technique classes: one inert replica per class, plain and hand-obfuscated.

Each replica is injected into the synthetic host as a patch release (and judged alone, as a
new package). The plain variant must reach its expected verdict with the class's own rule
among the evidence and the right technique on top. The hand-obfuscated variant hides API
names the way droppers do (``require('chi' + 'ld_process')``, ``o['host' + 'name']()``,
base64 literals); where the rules cannot see through that without the normaliser (h/norm),
the test is an expected failure, not a pass.
"""

from __future__ import annotations

import json

import pytest
from bench.corpus.replica import Spec, inject, obfuscated

from chainwatch.model import Level, PackageRef, Verdict
from chainwatch.scan import Loaded, Scanner, scan_snippet_files
from tests.helpers import BENIGN_INDEX
from tests.integration.test_replicas import SPECS as ALL_SPECS

SCANNER = Scanner(None, workers=1)
HOST = {"package.json": json.dumps({"name": "left-padder", "version": "1.0.0",
                                    "main": "index.js", "description": "pad strings"}).encode(),
        "index.js": BENIGN_INDEX.encode()}
#: class replica → the rules of that class at least one of which must be in the evidence
CLASSES: dict[str, set[str]] = {
    "dll-hijack": {"CW-DROPPER-SYSTEM-BINARY"},
    "silent-process": {"CW-DROPPER-SILENT-SPAWN", "CW-DROPPER-HIDDEN-PROCESS"},
    "host-beacon": {"CW-EXFIL-HOST-BEACON"},
    "destructive-fallback": {"CW-SABOTAGE-TOKEN-FALLBACK"},
    "c2-fallback": {"CW-C2-FALLBACK-HOSTS"},
    "c2-dga": {"CW-C2-GENERATED-DOMAIN"},
    "c2-dead-drop": {"CW-C2-DEAD-DROP"},
    "agent-hooks": {"CW-PERSIST-AGENT-HOOK", "CW-PERSIST-AGENT-CONFIG"},
    "vscode-folder-open": {"CW-PERSIST-VSCODE-FOLDER-OPEN"},
    "bun-dropper": {"CW-DROPPER-RUNTIME-FETCH"},
    "gyp-command": {"CW-INSTALL-GYP-COMMAND"},
    "new-install-script": {"CW-DIFF-NEW-INSTALL-SCRIPT"},
    "entry-payload": {"CW-DIFF-ENTRY-PAYLOAD"},
    "web3-key-exfil": {"CW-WALLET-KEY-EXFIL"},
}
SPECS = {s.name: s for s in ALL_SPECS if s.name in CLASSES}


def _loaded(files: dict[str, bytes]) -> Loaded:
    manifest = json.loads(files["package.json"])
    return Loaded(PackageRef(manifest["name"], manifest["version"]), scan_snippet_files(files))


def _judge(spec: Spec) -> tuple[Verdict, Verdict]:
    attacked = inject(HOST, spec)
    return SCANNER.analyze(_loaded(attacked), _loaded(HOST)), SCANNER.analyze(_loaded(attacked),
                                                                              None)


def test_every_class_has_a_replica_with_an_obfuscated_variant() -> None:
    assert set(SPECS) == set(CLASSES)
    assert all(obfuscated(s) is not None for s in SPECS.values())


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_plain_replica_of_the_class_is_caught(name: str) -> None:
    spec = SPECS[name]
    verdict, alone = _judge(spec)
    rules = {f.rule for f in verdict.findings}
    assert verdict.level is Level(spec.expect), (verdict.explanation, sorted(rules))
    assert rules & CLASSES[name], sorted(rules)
    assert verdict.findings[0].technique in spec.top_technique, verdict.findings[0].rule
    assert alone.level is not Level.BENIGN, alone.explanation


#: Hand-obfuscated variants still missed with the normaliser in place, and why; the rest pass.
NOT_YET: dict[str, str] = {
    "agent-hooks": "flagged, but suspicious: the folded hook write is not weighed as persistence",
    "dll-hijack": "malicious, but the computed require outranks the DLL write on top",
    "vscode-folder-open": "only weak signals: the folded tasks.json write is not recognised",
    "web3-key-exfil": "suspicious: the key's flow to the encoded host is not a chain yet",
}


@pytest.mark.parametrize("name", [
    pytest.param(n, marks=pytest.mark.xfail(reason=NOT_YET[n], strict=True)) if n in NOT_YET
    else n for n in sorted(CLASSES)])
def test_hand_obfuscated_replica_of_the_class_is_caught(name: str) -> None:
    variant = obfuscated(SPECS[name])
    assert variant is not None
    verdict, alone = _judge(variant)
    rules = {f.rule for f in verdict.findings}
    assert verdict.level is Level(variant.expect), (verdict.explanation, sorted(rules))
    # hiding the payload is itself the technique an analyst should see first
    assert verdict.findings[0].technique in (*variant.top_technique, "obfuscation",
                                             "code-injection"), verdict.findings[0].rule
    assert alone.level is not Level.BENIGN, alone.explanation


