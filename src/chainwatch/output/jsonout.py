"""``scan --format json|jsonl``: the chainwatch.scan/1 document of DESIGN.md."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from chainwatch.model import Verdict

SCHEMA = "chainwatch.scan/1"


def verdict_dict(v: Verdict) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "package": v.target.name,
        "version": v.target.version,
        "baseline": v.baseline.version if v.baseline else None,
        "verdict": v.level.value,
        "score": v.score,
        "explanation": v.explanation,
        "source": v.source,
        "integrity": v.integrity,
        "findings": [f.to_dict() for f in v.findings],
        "capabilities": (
            {"added": list(v.changes.capabilities_added),
             "removed": list(v.changes.capabilities_removed),
             "present": list(v.capabilities)}
            if v.changes else {"added": [], "removed": [], "present": list(v.capabilities)}
        ),
        "metadata_signals": [f.to_dict() for f in v.metadata_signals],
        "publisher": v.publisher,
        "published": v.published,
        "payload": {"fingerprints": list(v.fingerprints), "indicators": v.indicators},
        "elapsed_seconds": round(v.elapsed_s, 4),
        "bytes_scanned": v.bytes_scanned,
    }
    if v.dynamic is not None:
        doc["dynamic"] = v.dynamic.to_dict()
    if v.changes:
        c = v.changes
        doc["changes"] = {
            "files": {"added": list(c.files.added), "changed": list(c.files.changed),
                      "removed": list(c.files.removed), "unchanged": c.files.unchanged},
            "dependencies": {"added": c.dependencies_added, "removed": c.dependencies_removed},
            "scripts": {"added": c.scripts_added, "changed": c.scripts_changed},
        }
    return doc


def render_json(verdicts: Sequence[Verdict]) -> str:
    if len(verdicts) == 1:
        return json.dumps(verdict_dict(verdicts[0]), indent=2)
    return json.dumps([verdict_dict(v) for v in verdicts], indent=2)


def render_jsonl(verdicts: Sequence[Verdict]) -> str:
    return "\n".join(json.dumps(verdict_dict(v)) for v in verdicts)


def verdict_from_dict(doc: dict[str, Any]) -> Verdict:
    """A verdict read back from its ``chainwatch.scan/1`` document (findings and metadata;
    the change summary is not restored)."""
    from chainwatch.model import Finding, Level, PackageRef, Severity

    def finding(f: dict[str, Any]) -> Finding:
        return Finding(rule=str(f["rule"]), severity=Severity(f["severity"]),
                       technique=str(f.get("technique") or ""),
                       capability=str(f.get("capability") or ""),
                       message=str(f.get("message") or ""), file=f.get("file"),
                       line=f.get("line"), snippet=f.get("snippet"),
                       reference=f.get("reference"), preexisting=bool(f.get("preexisting")),
                       install_time=bool(f.get("install_time")))

    payload = doc.get("payload") or {}
    return Verdict(
        target=PackageRef(str(doc["package"]), str(doc["version"])),
        level=Level(doc["verdict"]), score=int(doc.get("score") or 0),
        explanation=str(doc.get("explanation") or ""),
        findings=tuple(finding(f) for f in doc.get("findings") or ()),
        capabilities=tuple((doc.get("capabilities") or {}).get("present") or ()),
        baseline=PackageRef(str(doc["package"]), str(doc["baseline"]))
        if doc.get("baseline") else None,
        metadata_signals=tuple(finding(f) for f in doc.get("metadata_signals") or ()),
        source=str(doc.get("source") or ""), integrity=doc.get("integrity"),
        publisher=doc.get("publisher"), published=doc.get("published"),
        fingerprints=tuple(payload.get("fingerprints") or ()),
        indicators=dict(payload.get("indicators") or {}))
