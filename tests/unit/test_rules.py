"""Every rule's own positive and negative cases, plus the rule-file format itself."""

from __future__ import annotations

from pathlib import Path

import pytest

from chainwatch.analysis.engine import Engine
from chainwatch.analysis.rulecheck import case_path
from chainwatch.analysis.rules import Rule, load_rules
from chainwatch.errors import UsageError
from chainwatch.model import PackageFile

RULES = load_rules()
ENGINE = Engine(RULES)


def _cases(kind: str) -> list[tuple[Rule, str]]:
    return [(r, c) for r in RULES for c in getattr(r.tests, kind)]


def _fired(rule: Rule, text: str) -> set[str]:
    data = text.encode("latin-1") if rule.target == "binary" else text.encode()
    return {f.rule for f in ENGINE.scan_file(PackageFile(case_path(rule), data))}


@pytest.mark.parametrize(("rule", "text"), _cases("positive"),
                         ids=lambda x: x.id if isinstance(x, Rule) else "")
def test_positive_case_fires(rule: Rule, text: str) -> None:
    assert rule.id in _fired(rule, text)


@pytest.mark.parametrize(("rule", "text"), _cases("negative"),
                         ids=lambda x: x.id if isinstance(x, Rule) else "")
def test_negative_case_stays_quiet(rule: Rule, text: str) -> None:
    assert rule.id not in _fired(rule, text)


def test_every_rule_is_documented() -> None:
    ids = [r.id for r in RULES]
    assert len(ids) == len(set(ids))
    for r in RULES:
        assert r.id.startswith("CW-")
        assert r.description and r.reference.startswith("http")
        assert r.tests.positive and r.tests.negative


def test_all_techniques_of_the_issue_are_covered() -> None:
    techniques = {r.technique for r in RULES}
    for needed in ("install-time-execution", "obfuscation", "dynamic-code", "steganography",
                   "browser-hijack", "crypto-theft", "secret-theft", "exfiltration",
                   "propagation", "persistence", "sabotage", "dropper"):
        assert needed in techniques


def test_user_rule_folder_is_loaded(tmp_path: Path) -> None:
    (tmp_path / "mine.yml").write_text("""
rules:
  - id: ACME-CANARY
    title: Mentions our canary string
    severity: high
    technique: exfiltration
    capability: exfil
    description: test rule
    reference: https://example.invalid/rule
    match:
      yara: |
        strings:
          $a = "acme-canary-7"
        condition: $a
    tests:
      positive: ["x('acme-canary-7')"]
      negative: ["x('acme')"]
""")
    rules = load_rules([tmp_path])
    engine = Engine(rules)
    found = engine.scan_file(PackageFile("a.js", b"send('acme-canary-7')"))
    assert [f.rule for f in found if f.rule.startswith("ACME")] == ["ACME-CANARY"]


@pytest.mark.parametrize("body", [
    "rules: [{id: X}]",
    "rules:\n  - {id: X, title: t, severity: bad, technique: t, capability: c, description: d,"
    " reference: r, match: {yara: 'condition: true'}, tests: {positive: [a], negative: [b]}}",
    "not: rules",
    "rules:\n  - {id: X, title: t, severity: low, technique: t, capability: c, description: d,"
    " reference: r, match: {yara: 'condition: true'}, tests: {positive: [a]}}",
])
def test_bad_rule_files_are_clear_errors(tmp_path: Path, body: str) -> None:
    (tmp_path / "bad.yml").write_text(body)
    with pytest.raises(UsageError):
        load_rules([tmp_path])


CANARY = """
rules:
  - id: ACME-CANARY
    title: Mentions our canary string
    severity: high
    technique: exfiltration
    capability: exfil
    description: test rule
    reference: https://example.invalid/rule
    match:
      yara: |
        strings:
          $a = "acme-canary-7"
        condition: $a
    tests:
      positive: [%s]
      negative: [%s]
"""


def _rules_test(*args: str) -> tuple[int, str, str]:
    from typer.testing import CliRunner

    from chainwatch.cli import app

    done = CliRunner().invoke(app, ["rules", "test", *args])
    return done.exit_code, done.stdout, done.stderr


def test_rules_test_passes_rules_whose_cases_hold(tmp_path: Path) -> None:
    (tmp_path / "mine.yml").write_text(CANARY % ('"x(\'acme-canary-7\')"', '"x(\'acme\')"'))
    code, out, err = _rules_test(str(tmp_path))
    assert (code, out) == (0, "")
    assert "1 rule, 2 cases: all passed" in err


def test_rules_test_fails_on_a_case_that_does_not_hold(tmp_path: Path) -> None:
    rule = tmp_path / "mine.yml"  # a single file works as well as a folder
    rule.write_text(CANARY % ('"x(\'acme-canary-7\')", "x(\'acme-canary-8\')"',
                              '"x(\'acme\')", "y = \'acme-canary-7\'"'))
    code, out, err = _rules_test(str(rule))
    assert code == 1
    assert out.splitlines() == [
        f"FAIL ACME-CANARY positive case 2 did not fire: x('acme-canary-8')  ({rule})",
        f"FAIL ACME-CANARY negative case 2 fired: y = 'acme-canary-7'  ({rule})"]
    assert "1 rule, 4 cases: 2 failed" in err


def test_rules_test_without_paths_runs_the_built_in_rules() -> None:
    code, _, err = _rules_test()
    assert code == 0 and f"{len(RULES)} rules, " in err


@pytest.mark.parametrize("body", ["missing", "clash"])
def test_rules_test_on_unreadable_rules_is_exit_2(tmp_path: Path, body: str) -> None:
    target = tmp_path / "nowhere"
    if body == "clash":  # an id of a built-in rule
        target = tmp_path / "clash.yml"
        target.write_text((CANARY % ('"acme-canary-7"', '"acme"')).replace(
            "ACME-CANARY", RULES[0].id))
    code, out, err = _rules_test(str(target))
    assert code == 2 and out == "" and err.startswith("error: ")
