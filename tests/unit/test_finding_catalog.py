"""Every finding id chainwatch can emit is listed by `chainwatch rules list` with its severity
and description: the rule files' ids, and the code findings of ``analysis/catalog.py``."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from chainwatch.analysis.catalog import CODE_FINDINGS, listed
from chainwatch.analysis.rules import load_rules
from chainwatch.cli import app

SRC = Path(__file__).resolve().parents[2] / "src" / "chainwatch"
ID = re.compile(r"^CW-[A-Z0-9]+(?:-[A-Z0-9]+)*$")
RULE_IDS = {r.id for r in load_rules()}


def ids_in(source: str) -> set[str]:
    """``CW-`` ids in Python source: whole string constants, and the constant start of an
    f-string (``f"CW-POLICY-{rule}"`` is the family ``CW-POLICY-``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.JoinedStr):
            head = node.values[0] if node.values else None
            if (isinstance(head, ast.Constant) and isinstance(head.value, str)
                    and head.value.startswith("CW-")):
                found.add(head.value)
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str)
              and ID.match(node.value)):
            found.add(node.value)
    return found


def _unlisted(found: set[str]) -> set[str]:
    return {i for i in found if i not in RULE_IDS and not listed(i) and not (
        i.endswith("-") and any(f.id == i + "*" for f in CODE_FINDINGS))}


def test_every_id_written_in_src_is_listed() -> None:
    found: set[str] = set()
    for path in SRC.rglob("*.py"):
        if path.name != "catalog.py":
            found |= ids_in(path.read_text(encoding="utf-8"))
    # the sweep sees the ids that live in code, not only the rule files' ones
    assert {"CW-KNOWN-BAD", "CW-DYN-EXFIL", "CW-ARCHIVE-LIMIT", "CW-META-TYPOSQUAT",
            "CW-POLICY-", "CW-VERDICT-"} <= found
    assert _unlisted(found) == set()


def test_the_sweep_catches_an_id_nobody_listed() -> None:
    source = ('Finding(rule="CW-NEW-THING", severity=s)\n'
              'x = f"CW-FRESH-{name}"\nok = "CW-KNOWN-BAD"\n'
              'prose = "CW-KNOWN-BAD is one id"\n')
    assert _unlisted(ids_in(source)) == {"CW-NEW-THING", "CW-FRESH-"}


def test_code_findings_are_unique_and_described() -> None:
    ids = [f.id for f in CODE_FINDINGS]
    assert len(ids) == len(set(ids)) and not set(ids) & RULE_IDS
    for f in CODE_FINDINGS:
        assert f.severity in ("info", "low", "medium", "high", "critical", "policy"), f.id
        assert f.description.endswith(".") and f.technique and f.source, f.id


@pytest.mark.parametrize("rule_id", ["CW-DYN-EXFIL", "CW-ARCHIVE-BOMB", "CW-META-NEW-PUBLISHER",
                                     "CW-VERDICT-*", "CW-POLICY-*"])
def test_rules_list_shows_code_findings_with_severity(rule_id: str) -> None:
    done = CliRunner().invoke(app, ["rules", "list"])
    assert done.exit_code == 0
    lines = {line.split()[0]: line.split() for line in done.stdout.splitlines()}
    expected = next(f for f in CODE_FINDINGS if f.id == rule_id)
    assert lines[rule_id][1] == expected.severity
    assert set(lines) >= RULE_IDS  # and every rule file's rule too
