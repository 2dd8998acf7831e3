"""Provenance drift: a release whose (valid) provenance names another repository, workflow file
or trigger than the releases before it, read from full-format packuments and npm's attestation
documents served by a fake registry."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from chainwatch.analysis.provenance import BuildSource, build_source, provenance_drift
from chainwatch.model import Level, Verdict
from chainwatch.registry import RegistryClient
from chainwatch.registry.npmrc import NpmConfig
from chainwatch.scan import Scanner
from tests.helpers import FIXTURES
from tests.hostile.fake_registry import UPSTREAM, FakeRegistry

ATTESTATIONS = FIXTURES / "attestations"
VERSIONS = ["1.0.0", "1.0.1", "1.0.2", "1.1.0", "1.2.0", "1.2.1"]
INDEX = "module.exports = function pad(s, n) { return String(s).padStart(n); };\n"


def _registry(attestation_host: str = UPSTREAM) -> FakeRegistry:
    reg = FakeRegistry()
    for version in VERSIONS:
        entry = reg.publish("provenanced", version, {"index.js": INDEX},
                            _npmUser={"name": "acme-bot", "email": "bot@acme.invalid",
                                      "trustedPublisher": {"id": "github"}},
                            repository={"type": "git", "url": "git+https://github.com/acme/provenanced.git"})
        url = f"{attestation_host}-/npm/v1/attestations/provenanced@{version}"
        entry["dist"]["attestations"] = {"url": url, "provenance": {
            "predicateType": "https://slsa.dev/provenance/v1"}}
        reg.blobs[url] = (ATTESTATIONS / f"provenanced@{version}.json").read_bytes()
    return reg


def _scan(reg: FakeRegistry, tmp_path: Path, version: str) -> Verdict:
    client = RegistryClient(NpmConfig(registry=UPSTREAM), tmp_path,
                            transport=httpx.MockTransport(reg), backoff=0.0)
    with client, Scanner(client, workers=1) as scanner:
        return scanner.scan(f"provenanced@{version}")


def _drift(v: Verdict) -> list[str]:
    return [s.message for s in v.metadata_signals if s.rule == "CW-META-PROVENANCE-DRIFT"]


@pytest.mark.parametrize("version", ["1.0.2", "1.1.0"])
def test_same_source_is_no_drift_in_either_statement_format(tmp_path: Path, version: str) -> None:
    verdict = _scan(_registry(), tmp_path, version)
    assert _drift(verdict) == []
    assert verdict.level is Level.BENIGN, verdict.explanation


def test_a_release_built_from_another_repository_is_flagged(tmp_path: Path) -> None:
    verdict = _scan(_registry(), tmp_path, "1.2.0")
    drift = _drift(verdict)
    assert len(drift) == 1 and "github.com/acme-dev-tools/provenanced" in drift[0]
    assert "github.com/acme/provenanced" in drift[0]
    assert verdict.level is not Level.BENIGN


def test_another_workflow_file_and_trigger_are_flagged(tmp_path: Path) -> None:
    drift = _drift(_scan(_registry(), tmp_path, "1.2.1"))
    assert any("workflow file '.github/workflows/publish-manual.yml'" in d for d in drift)
    assert any("trigger 'workflow_dispatch'" in d for d in drift)
    assert not any("repository" in d.split(";")[0] for d in drift)


def test_attestations_on_a_foreign_host_are_not_fetched(tmp_path: Path) -> None:
    reg = _registry(attestation_host="https://elsewhere.test.invalid/")
    verdict = _scan(reg, tmp_path, "1.2.0")
    assert _drift(verdict) == []
    assert not any(seen.host == "elsewhere.test.invalid" for seen in reg.log)


def _doc(statement: Any) -> dict[str, Any]:
    payload = base64.b64encode(json.dumps(statement).encode()).decode()
    return {"attestations": [{"predicateType": "https://slsa.dev/provenance/v1",
                              "bundle": {"dsseEnvelope": {"payload": payload}}}]}


@pytest.mark.parametrize("doc", [
    None, [], {"attestations": "x"}, {"attestations": [{"predicateType": 5}]},
    {"attestations": [{"predicateType": "https://slsa.dev/provenance/v1",
                       "bundle": {"dsseEnvelope": {"payload": "not base64!"}}}]},
    {"attestations": [{"predicateType": "https://slsa.dev/provenance/v1",
                       "bundle": {"dsseEnvelope": {"payload": "A" * 2_000_000}}}]},
    _doc(["a list"]), _doc({"predicate": {"buildDefinition": {"externalParameters": 7}}}),
])
def test_malformed_attestations_name_no_source(doc: Any) -> None:
    assert build_source(doc) is None


def test_odd_field_types_are_not_stated_rather_than_errors() -> None:
    src = build_source(_doc({"predicate": {"buildDefinition": {"externalParameters": {
        "workflow": {"repository": 12, "path": ["x"]}}}}}))
    assert src == BuildSource(None, None, None)
    assert provenance_drift("2.0.0", src, [("1.0.0", BuildSource("a/b", "w.yml", "push"))]) == []


def test_drift_needs_an_earlier_release_with_provenance() -> None:
    assert provenance_drift("1.0.0", BuildSource("github.com/x/y", "w.yml", "push"), []) == []
