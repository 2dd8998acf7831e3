"""Detection rules are data: YAML files with YARA, tree-sitter or detector matchers.

Each rule has an id, a severity, a technique, the capability it shows, a description, a
reference, exactly one matcher and inline test cases (``tests.positive`` must fire,
``tests.negative`` must not). Users add their own folder of rule files with ``--rules DIR``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from chainwatch.errors import UsageError
from chainwatch.model import Severity

#: Where a rule looks: code = JS/TS source; script = an install-script command line;
#: manifest = package.json as a whole; binary = any non-text file; text = any text file.
TARGETS = ("code", "script", "manifest", "binary", "text")
#: Which text of a JS/TS file a rule reads: the file as it is, the normalised view
#: (analysis/normalize.py: constants folded) or both (the default; findings are deduplicated).
VIEWS = ("both", "surface", "normalized")


@dataclass(frozen=True)
class RuleTests:
    positive: tuple[str, ...]
    negative: tuple[str, ...]
    #: For file-level detectors, the file name the snippets are tested under.
    path: str = "index.js"


@dataclass(frozen=True)
class Rule:
    id: str
    title: str
    severity: Severity
    technique: str
    capability: str
    description: str
    reference: str
    target: str
    tests: RuleTests
    yara: str | None = None
    query: str | None = None
    #: YARA regex that must match before the file is parsed for ``query``: the prefilter.
    needle: str | None = None
    detector: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    #: YARA regexes that must all match somewhere in the file for the rule to fire.
    requires: tuple[str, ...] = ()
    #: Report at most this many places per file (the count is still given).
    max_hits: int = 3
    #: ``both``, ``surface`` or ``normalized`` (see VIEWS).
    view: str = "both"
    origin: str = ""


def _require(raw: dict[str, Any], key: str, origin: str) -> Any:
    if key not in raw or raw[key] in (None, ""):
        raise UsageError(f"{origin}: rule {raw.get('id', '?')} lacks '{key}'")
    return raw[key]


def _test_text(item: object) -> str:
    """A test case: a string, or {prefix, text, repeat} for long generated input."""
    if isinstance(item, dict):
        return str(item.get("prefix", "")) + str(item.get("text", "")) * int(item.get("repeat", 1))
    return str(item)


def _parse_rule(raw: dict[str, Any], origin: str) -> Rule:
    if not isinstance(raw, dict):
        raise UsageError(f"{origin}: a rule must be a mapping")
    rid = str(_require(raw, "id", origin))
    match = _require(raw, "match", origin)
    if not isinstance(match, dict):
        raise UsageError(f"{origin}: rule {rid}: 'match' must be a mapping")
    kinds = [k for k in ("yara", "query", "detector") if k in match]
    if len(kinds) != 1:
        raise UsageError(f"{origin}: rule {rid}: 'match' needs exactly one of yara/query/detector")
    if "query" in match and not match.get("needle"):
        raise UsageError(f"{origin}: rule {rid}: a query needs a 'needle' regex as prefilter")
    target = str(raw.get("target", "code"))
    if target not in TARGETS:
        raise UsageError(f"{origin}: rule {rid}: unknown target {target!r}")
    view = str(raw.get("view", "both"))
    if view not in VIEWS:
        raise UsageError(f"{origin}: rule {rid}: unknown view {view!r} (one of {', '.join(VIEWS)})")
    tests = raw.get("tests") or {}
    positive = tuple(_test_text(t) for t in tests.get("positive") or ())
    negative = tuple(_test_text(t) for t in tests.get("negative") or ())
    if not positive or not negative:
        raise UsageError(f"{origin}: rule {rid} needs at least one positive and one negative test")
    try:
        severity = Severity(str(_require(raw, "severity", origin)))
    except ValueError as exc:
        raise UsageError(f"{origin}: rule {rid}: bad severity") from exc
    return Rule(
        id=rid,
        title=str(_require(raw, "title", origin)),
        severity=severity,
        technique=str(_require(raw, "technique", origin)),
        capability=str(_require(raw, "capability", origin)),
        description=str(_require(raw, "description", origin)).strip(),
        reference=str(_require(raw, "reference", origin)),
        target=target,
        tests=RuleTests(positive, negative, str(tests.get("path", "index.js"))),
        yara=match.get("yara"),
        query=match.get("query"),
        needle=match.get("needle"),
        detector=match.get("detector"),
        params=dict(match.get("params") or {}),
        requires=tuple(str(r) for r in match.get("requires") or ()),
        max_hits=int(raw.get("max_hits", 3)),
        view=view,
        origin=origin,
    )


#: PyYAML's safe loader on libyaml when it is built with it: the built-in rules parse in ~15 ms
#: instead of ~110 ms, part of every scan's start.
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _load_text(text: str, origin: str) -> list[Rule]:
    try:
        doc = yaml.load(text, Loader=_SAFE_LOADER)
    except yaml.YAMLError as exc:
        raise UsageError(f"{origin}: not valid YAML: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("rules"), list):
        raise UsageError(f"{origin}: expected a mapping with a 'rules' list")
    return [_parse_rule(r, origin) for r in doc["rules"]]


def builtin_rules() -> list[Rule]:
    rules: list[Rule] = []
    folder = resources.files("chainwatch") / "rules"
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith((".yml", ".yaml")):
            rules.extend(_load_text(entry.read_text(encoding="utf-8"), f"rules/{entry.name}"))
    return rules


def load_rules(extra_dirs: Iterable[Path] = ()) -> list[Rule]:
    rules = builtin_rules()
    rules.extend(load_rule_paths(extra_dirs))
    seen: set[str] = set()
    for rule in rules:
        if rule.id in seen:
            raise UsageError(f"{rule.origin}: duplicate rule id {rule.id}")
        seen.add(rule.id)
    return rules


def load_rule_paths(paths: Iterable[Path]) -> list[Rule]:
    """The rules of folders of rule files (``*.yml``, ``*.yaml``) and of single rule files."""
    rules: list[Rule] = []
    for folder in paths:
        if folder.is_file():
            files = [folder]
        elif folder.is_dir():
            files = sorted(folder.glob("*.y*ml"))
        else:
            raise UsageError(f"{folder}: not a rule file or a folder of rule files")
        for path in files:
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise UsageError(f"{path}: cannot read: {exc}") from exc
            rules.extend(_load_text(text, str(path)))
    return rules

