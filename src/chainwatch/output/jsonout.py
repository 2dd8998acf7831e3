"""``scan --format json|jsonl``: the documents of docs/design.md.

``json`` is always one ``chainwatch.scan-run/1`` object, whatever the number of targets: its
``results`` hold, in command-line order, one ``chainwatch.scan/1`` document per scanned target
and one ``chainwatch.scan-error/1`` object (``target``, ``error``, ``exit_code``) per target that
could not be scanned. ``jsonl`` writes the same results, one per line, without the envelope.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from chainwatch.model import Level, Verdict

SCHEMA = "chainwatch.scan/1"
RUN_SCHEMA = "chainwatch.scan-run/1"
ERROR_SCHEMA = "chainwatch.scan-error/1"


@dataclass(frozen=True)
class Failed:
    """A target that could not be scanned, and why (one line)."""

    target: str
    error: str
    exit_code: int = 2


Outcome = Verdict | Failed


def failed_dict(f: Failed) -> dict[str, Any]:
    return {"schema": ERROR_SCHEMA, "target": f.target, "error": f.error,
            "exit_code": f.exit_code}


def result_dict(o: Outcome) -> dict[str, Any]:
    return failed_dict(o) if isinstance(o, Failed) else verdict_dict(o)


def run_dict(outcomes: Sequence[Outcome]) -> dict[str, Any]:
    verdicts = [o for o in outcomes if isinstance(o, Verdict)]
    summary: dict[str, int] = {"targets": len(outcomes), "scanned": len(verdicts),
                               "failed": len(outcomes) - len(verdicts)}
    summary.update({level.value: sum(v.level is level for v in verdicts) for level in Level})
    return {"schema": RUN_SCHEMA, "summary": summary,
            "results": [result_dict(o) for o in outcomes]}


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
        "origin": v.origin,
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


def render_json(outcomes: Sequence[Outcome]) -> str:
    """One ``chainwatch.scan-run/1`` object, for one target or many."""
    return json.dumps(run_dict(outcomes), indent=2)


def render_jsonl(outcomes: Sequence[Outcome]) -> str:
    """One result per line: ``chainwatch.scan/1`` or ``chainwatch.scan-error/1``."""
    return "\n".join(json.dumps(result_dict(o)) for o in outcomes)


def scan_documents(doc: Any) -> Iterator[dict[str, Any]]:
    """The ``chainwatch.scan/1`` documents in parsed ``scan --format json|jsonl`` output, of
    this version (a ``chainwatch.scan-run/1`` envelope) or an older one (one document, or a list
    of them). Failed targets (``error``) are skipped; anything else that is not a scan document
    raises ValueError."""
    if isinstance(doc, dict) and doc.get("schema") == RUN_SCHEMA:
        results = doc.get("results")
        if not isinstance(results, list):
            raise ValueError(f"a {RUN_SCHEMA} document without a results list")
        items: list[Any] = results
    else:
        items = doc if isinstance(doc, list) else [doc]
    for item in items:
        if isinstance(item, dict) and "error" in item and "verdict" not in item:
            continue
        if not isinstance(item, dict) or "package" not in item or "verdict" not in item:
            raise ValueError(f"not a {SCHEMA} document")
        if not (isinstance(item["package"], str) and item["package"]
                and isinstance(item.get("version"), str) and item["version"]):
            # a hand-made or damaged document: nothing downstream can name the release
            raise ValueError(f"a {SCHEMA} document without a package name and version")
        yield item


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
                       install_time=bool(f.get("install_time")),
                       normalized=f.get("normalized") if isinstance(f.get("normalized"), str)
                       else None)

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
        origin=str(doc.get("origin") or "unknown"),
        publisher=doc.get("publisher"), published=doc.get("published"),
        fingerprints=tuple(payload.get("fingerprints") or ()),
        indicators=dict(payload.get("indicators") or {}))
