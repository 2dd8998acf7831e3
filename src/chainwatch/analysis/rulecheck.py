"""Run rules' own test cases: every positive case must fire its rule, every negative must not.

The test suite runs the built-in rules' cases through this; ``chainwatch rules test`` runs the
cases of anyone's rule files the same way, so a custom rule that no longer matches what it
promises is caught before it is trusted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from chainwatch.analysis.engine import Engine
from chainwatch.analysis.rules import Rule
from chainwatch.model import PackageFile


@dataclass(frozen=True)
class CaseResult:
    rule: Rule
    kind: str  # "positive" or "negative"
    index: int  # 1-based, in the rule file's order
    text: str
    fired: bool

    @property
    def passed(self) -> bool:
        return self.fired == (self.kind == "positive")


def case_path(rule: Rule) -> str:
    """The file name a rule's cases are tested under (its target decides which rules apply)."""
    if rule.target == "manifest":
        return "package.json"
    if rule.target == "script" and rule.tests.path == "index.js":
        return "install.sh"
    return rule.tests.path


def fires(engine: Engine, rule: Rule, text: str) -> bool:
    data = text.encode("latin-1") if rule.target == "binary" else text.encode()
    return rule.id in {f.rule for f in engine.scan_file(PackageFile(case_path(rule), data))}


def run_cases(rules: Sequence[Rule], engine: Engine | None = None) -> list[CaseResult]:
    """Every case of every rule, in order."""
    engine = engine or Engine(rules)
    return [CaseResult(rule, kind, index, text, fires(engine, rule, text))
            for rule in rules
            for kind in ("positive", "negative")
            for index, text in enumerate(getattr(rule.tests, kind), 1)]
