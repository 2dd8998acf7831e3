"""Shared by the sandbox tests: inert replica packages and a check that the sandbox runs here."""

from __future__ import annotations

import functools
import json
from typing import Any

from chainwatch.model import Finding, PackageRef, Severity
from chainwatch.sandbox import Outcome, run_dynamic
from chainwatch.sandbox.launcher import Limits, Tools
from chainwatch.scan import scan_snippet_files
from tests.helpers import missing_part


def manifest(name: str, **extra: Any) -> str:
    return json.dumps({"name": name, "version": "1.0.1", **extra})


@functools.cache
def sandbox_problem() -> str | None:
    """Why the real sandbox cannot run here (no bwrap, no user namespaces), or None."""
    out = run_dynamic(scan_snippet_files({"package.json": manifest("probe"),
                                          "index.js": "module.exports = 1;\n"}),
                      PackageRef("probe", "1.0.1"))
    return None if out.dynamic.ran else out.dynamic.reason


def need_sandbox() -> None:
    problem = sandbox_problem()
    if problem:
        missing_part(f"the bubblewrap sandbox cannot run here: {problem}")


def run(files: dict[str, str | bytes], name: str = "replica", limits: Limits | None = None,
        tools: Tools | None = None) -> Outcome:
    return run_dynamic(scan_snippet_files(files), PackageRef(name, "1.0.1"), tools, limits)


def rules(outcome: Outcome, at_least: Severity = Severity.INFO) -> set[str]:
    return {f.rule for f in outcome.findings if f.severity.rank >= at_least.rank}


def by_rule(outcome: Outcome, rule: str) -> list[Finding]:
    return [f for f in outcome.findings if f.rule == rule]


def kinds(outcome: Outcome, phase: str | None = None) -> set[str]:
    return {e.kind for e in outcome.dynamic.events if phase is None or e.phase == phase}
