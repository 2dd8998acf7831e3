"""Provenance drift: a release built from another repository, workflow file or trigger.

An attacker who steals a maintainer's GitHub token can publish with *valid* provenance, from
their own fork or a workflow they added, or by dispatching the release workflow by hand. The
attestation then still verifies, but what it names differs from every earlier release. npm
serves the attestation bundles at ``dist.attestations.url``; the SLSA provenance statement is
base64 in ``bundle.dsseEnvelope.payload``. Both SLSA v1 (``buildDefinition``) and v0.2
(``invocation.configSource``) statements are read; anything else is "unknown", never drift.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any

from chainwatch.model import Finding, Severity

REF = "https://docs.npmjs.com/generating-provenance-statements"
SLSA_TYPES = ("https://slsa.dev/provenance/v1", "https://slsa.dev/provenance/v0.2")
#: A provenance statement larger than this is not read.
MAX_PAYLOAD_BYTES = 256 * 1024


@dataclass(frozen=True)
class BuildSource:
    """What a provenance statement says the release was built from (None: not stated)."""

    repository: str | None = None
    workflow: str | None = None
    trigger: str | None = None


def _norm_repo(value: object) -> str | None:
    if not isinstance(value, str) or not value or len(value) > 500:
        return None
    repo = value.strip().lower().removeprefix("git+")
    repo = re.sub(r"^[a-z]+://", "", repo).split("@", 1)[0].removesuffix("/").removesuffix(".git")
    return repo or None


def _short(value: object, limit: int = 300) -> str | None:
    return value[:limit] if isinstance(value, str) and value else None


def _dig(doc: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(doc, dict):
            return None
        doc = doc.get(key)
    return doc


def _statement(entry: Any) -> dict[str, Any] | None:
    payload = _dig(entry, "bundle", "dsseEnvelope", "payload")
    if not isinstance(payload, str) or len(payload) > MAX_PAYLOAD_BYTES * 4 // 3 + 4:
        return None
    try:
        doc = json.loads(base64.b64decode(payload, validate=True))
    except (binascii.Error, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def build_source(attestations: Any) -> BuildSource | None:
    """The build source named by the SLSA provenance in an attestations document, or None."""
    entries = _dig(attestations, "attestations")
    if not isinstance(entries, list):
        return None
    for entry in entries[:8]:
        if not isinstance(entry, dict) or entry.get("predicateType") not in SLSA_TYPES:
            continue
        statement = _statement(entry)
        predicate = _dig(statement, "predicate")
        if not isinstance(predicate, dict):
            continue
        workflow = _dig(predicate, "buildDefinition", "externalParameters", "workflow")
        if isinstance(workflow, dict):  # SLSA v1, as npm publish --provenance writes it
            return BuildSource(
                repository=_norm_repo(workflow.get("repository")),
                workflow=_short(workflow.get("path")),
                trigger=_short(_dig(predicate, "buildDefinition", "internalParameters",
                                    "github", "event_name")))
        config = _dig(predicate, "invocation", "configSource")
        if isinstance(config, dict):  # SLSA v0.2
            return BuildSource(
                repository=_norm_repo(config.get("uri")),
                workflow=_short(config.get("entryPoint")),
                trigger=_short(_dig(predicate, "invocation", "environment",
                                    "GITHUB_EVENT_NAME"))
                or _short(_dig(predicate, "invocation", "environment", "github_event_name")))
    return None


_FIELDS = (("repository", "repository", Severity.HIGH),
           ("workflow", "workflow file", Severity.MEDIUM),
           ("trigger", "trigger", Severity.MEDIUM))


def provenance_drift(version: str, current: BuildSource | None,
                     previous: list[tuple[str, BuildSource]]) -> list[Finding]:
    """Findings for each part of ``current`` that none of the ``previous`` releases had."""
    if current is None or not previous:
        return []
    out: list[Finding] = []
    for attr, words, severity in _FIELDS:
        now = getattr(current, attr)
        before = {getattr(src, attr) for _, src in previous} - {None}
        if now is None or not before or now in before:
            continue
        versions = ", ".join(v for v, _ in previous)
        out.append(Finding(
            rule="CW-META-PROVENANCE-DRIFT", severity=severity, technique="metadata",
            capability="trust-downgrade",
            message=(f"provenance of {version} names the {words} {now!r}; the previous releases "
                     f"with provenance ({versions}) named {', '.join(sorted(map(repr, before)))}"),
            reference=REF))
    return out
