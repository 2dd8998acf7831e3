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
        "elapsed_seconds": round(v.elapsed_s, 4),
        "bytes_scanned": v.bytes_scanned,
    }
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
