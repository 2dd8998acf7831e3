"""``scan --format sarif``: SARIF 2.1.0 for code-scanning dashboards."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from chainwatch import __version__
from chainwatch.model import Finding, Severity, Verdict
from chainwatch.output.escape import plain

SARIF_SCHEMA = (
    "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
)
LEVEL = {Severity.INFO: "note", Severity.LOW: "note", Severity.MEDIUM: "warning",
         Severity.HIGH: "error", Severity.CRITICAL: "error"}
SECURITY_SEVERITY = {Severity.INFO: "0.0", Severity.LOW: "3.0", Severity.MEDIUM: "5.0",
                     Severity.HIGH: "8.0", Severity.CRITICAL: "9.5"}


def _result(v: Verdict, f: Finding, rule_index: int) -> dict[str, Any]:
    result: dict[str, Any] = {
        "ruleId": f.rule,
        "ruleIndex": rule_index,
        "level": LEVEL[f.severity],
        "message": {"text": plain(f"{v.target}: {f.message}")},
        "properties": {
            "package": plain(v.target.name), "version": plain(v.target.version),
            "verdict": v.level.value, "score": v.score, "capability": f.capability,
            "preexisting": f.preexisting,
        },
    }
    uri = f"{v.target.name}/{f.file}" if f.file else "package.json"
    location: dict[str, Any] = {"artifactLocation": {"uri": plain(uri).replace(" ", "%20")}}
    if f.line:
        region: dict[str, Any] = {"startLine": f.line}
        if f.snippet:
            region["snippet"] = {"text": plain(f.snippet)}
        location["region"] = region
    result["locations"] = [{"physicalLocation": location}]
    return result


def render(verdicts: Sequence[Verdict]) -> str:
    rules: dict[str, dict[str, Any]] = {}
    index: dict[str, int] = {}
    results: list[dict[str, Any]] = []
    for v in verdicts:
        for f in (*v.metadata_signals, *v.findings):
            if f.severity is Severity.INFO:
                continue
            if f.rule not in rules:
                index[f.rule] = len(rules)
                rule: dict[str, Any] = {
                    "id": f.rule,
                    "shortDescription": {"text": f.technique},
                    "properties": {"security-severity": SECURITY_SEVERITY[f.severity],
                                   "tags": list(dict.fromkeys(
                                       ["security", f.technique, f.capability]))},
                }
                if f.reference:
                    rule["helpUri"] = f.reference
                rules[f.rule] = rule
            results.append(_result(v, f, index[f.rule]))
    doc = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "chainwatch", "version": __version__,
                "informationUri": "https://github.com/chainwatch/chainwatch",
                "rules": list(rules.values()),
            }},
            "results": results,
        }],
    }
    return json.dumps(doc, indent=2)
