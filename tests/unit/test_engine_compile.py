"""Rule sources are checked in one YARA compile; a rule that does not compile is still named."""

from __future__ import annotations

import pytest

from chainwatch.analysis.engine import Engine
from chainwatch.analysis.rules import _load_text, builtin_rules
from chainwatch.errors import UsageError

RULE = """
rules:
  - id: {rid}
    title: probe
    severity: low
    technique: probe
    capability: probe
    description: a probe rule
    reference: https://example.invalid/
    match:
      yara: |
        strings:
          $a = "{needle}"
        condition: {condition}
    tests:
      positive: ["{needle}"]
      negative: ["nothing"]
"""


def rule(rid: str, condition: str = "$a") -> str:
    return RULE.format(rid=rid, needle="cw-probe-needle", condition=condition)


def test_the_built_in_rules_and_a_good_extra_rule_compile() -> None:
    engine = Engine([*builtin_rules(), *_load_text(rule("CW-TEST-GOOD"), "extra.yml")])
    assert "CW-TEST-GOOD" in engine.by_id


@pytest.mark.parametrize("condition", ["$a and", "$missing", "undefined_identifier"])
def test_a_rule_that_does_not_compile_is_named_among_good_ones(condition: str) -> None:
    rules = [*builtin_rules(), *_load_text(rule("CW-TEST-GOOD"), "extra.yml"),
             *_load_text(rule("CW-TEST-BAD", condition), "bad.yml")]
    with pytest.raises(UsageError) as raised:
        Engine(rules)
    assert str(raised.value).startswith("bad.yml: rule CW-TEST-BAD does not compile as YARA: ")


def test_rule_files_read_the_same_with_libyaml_as_with_pure_python() -> None:
    # the rules are read with libyaml's safe loader when PyYAML has it: same data, faster
    from importlib import resources

    import yaml

    from chainwatch.analysis import rules as loader

    texts = [e.read_text(encoding="utf-8") for e in (resources.files("chainwatch") / "rules").iterdir()
             if e.name.endswith((".yml", ".yaml"))]
    assert texts
    for text in texts:
        assert yaml.load(text, Loader=loader._SAFE_LOADER) == yaml.safe_load(text)
    with pytest.raises(UsageError, match="not valid YAML"):
        loader._load_text("rules: [unclosed", "broken.yml")
