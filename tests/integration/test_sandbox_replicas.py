"""Replicas in the real sandbox show the events their specs declare (issue 13 D).

A representative subset of tests/fixtures/replicas, one per way a payload runs and per kind of
evidence: install-time exfiltration over HTTPS, a detached process, binding.gyp, host facts in
a DNS name, persistence, a load-time payload using fetch, a browser hook, some hand-obfuscated.
Each is injected into the small synthetic host and run by ``run_dynamic`` (what ``scan
--sandbox`` adds); ``dynamic:`` in its spec says which events must be seen in which phase.
bench/dynamic.py runs the whole corpus the same way. Replicas are inert (.invalid hosts,
192.0.2.0/24) and run only inside the sandbox.
"""

from __future__ import annotations

import json

import pytest
from bench.corpus.expect import missing, observed
from bench.corpus.replica import Spec, inject, obfuscated, specs

from chainwatch.model import PackageRef, Severity
from chainwatch.sandbox import run_dynamic
from chainwatch.scan import scan_snippet_files
from tests.helpers import BENIGN_INDEX
from tests.sandbox_support import need_sandbox

pytestmark = pytest.mark.integration

HOST = {"package.json": json.dumps({"name": "left-padder", "version": "1.0.0",
                                    "main": "index.js", "description": "pad strings"}).encode(),
        "index.js": BENIGN_INDEX.encode()}
SPECS = {s.name: s for s in specs()}
#: (spec, hand-obfuscated?) — at most 8, about 5 s each
SUBSET = [("new-install-script", False), ("silent-process", True), ("gyp-command", False),
          ("dependency-confusion", False), ("vscode-folder-open", True), ("c2-fallback", False),
          ("entry-payload", True), ("qix", False)]


def _spec(name: str, hand: bool) -> Spec:
    spec = SPECS[name]
    if hand:
        variant = obfuscated(spec)
        assert variant is not None, f"{name} has no hand-obfuscated variant"
        return variant
    return spec


@pytest.fixture(autouse=True)
def _sandbox() -> None:
    need_sandbox()


@pytest.mark.parametrize(("name", "hand"), SUBSET,
                         ids=[f"{n}{'-hand-obfuscated' if h else ''}" for n, h in SUBSET])
def test_replica_shows_its_declared_events(name: str, hand: bool) -> None:
    spec = _spec(name, hand)
    assert spec.dynamic is not None and spec.dynamic.runs != "never"
    files = inject(HOST, spec)
    manifest = json.loads(files["package.json"])
    out = run_dynamic(scan_snippet_files(dict(files)), PackageRef(manifest["name"],
                                                                  manifest["version"]))
    assert out.dynamic.ran, out.dynamic.reason
    seen = observed(out.dynamic, out.findings)
    assert missing(spec.dynamic, out.dynamic, out.findings) == [], (spec.dynamic, seen)
    # the evidence weighs: at least one CW-DYN finding of high or critical severity
    assert any(f.rule.startswith("CW-DYN") and f.severity.rank >= Severity.HIGH.rank
               for f in out.findings), [(f.rule, f.severity.value) for f in out.findings]


def test_every_replica_declares_what_the_sandbox_must_see() -> None:
    """A new replica says when its payload runs and what it shows (or why it never runs)."""
    undeclared = [s.name for s in SPECS.values() if s.dynamic is None]
    assert undeclared == []
    never = {s.name for s in SPECS.values() if s.dynamic and s.dynamic.runs == "never"}
    assert all(SPECS[n].dynamic.why for n in never)  # type: ignore[union-attr]
