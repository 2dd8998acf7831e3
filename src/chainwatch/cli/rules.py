"""``chainwatch rules``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from chainwatch.cli.app import err, rules_app
from chainwatch.cli.options import (
    QuietOpt,
)
from chainwatch.errors import ChainwatchError
from chainwatch.output.words import plural


@rules_app.command("list", epilog=(
    "Examples:\n\n"
    "  chainwatch rules list\n\n"
    "  chainwatch rules list --rules ./my-rules"))
def rules_list(
    rules_dir: Annotated[list[Path] | None, typer.Option(
        "--rules", metavar="DIR", help="Extra folder of rule files (repeatable).")] = None,
) -> None:
    """List every finding chainwatch can report, with its severity and technique.

    The rule files' rules, then the findings made by code (archive, scan, metadata, diff,
    sandbox, outputs), each with its severity, technique and title or description."""
    from chainwatch.analysis.catalog import CODE_FINDINGS
    from chainwatch.analysis.rules import load_rules
    from chainwatch.output.escape import plain

    try:
        rules = load_rules(rules_dir or [])
    except ChainwatchError as exc:
        err.print(plain(f"error: {exc}"), markup=False, soft_wrap=True)
        raise typer.Exit(exc.exit_code) from exc
    for r in rules:
        typer.echo(plain(f"{r.id:32} {r.severity.value:9} {r.technique:24} {r.title}"))
    for f in CODE_FINDINGS:
        typer.echo(f"{f.id:32} {f.severity:9} {f.technique:24} {f.description}")


@rules_app.command("test", epilog=(
    "Examples:\n\n"
    "  chainwatch rules test                 # the built-in rules\n\n"
    "  chainwatch rules test ./my-rules      # a folder of rule files (or single files)"))
def rules_test(
    paths: Annotated[list[Path] | None, typer.Argument(
        metavar="PATH", help="Rule files or folders of them; none: the built-in rules.")] = None,
    quiet: QuietOpt = False,
) -> None:
    """Run each rule's own test cases against the rule.

    Every positive case must fire the rule, every negative case must not. Exit 1 when a case
    fails, 2 when a rule file cannot be read."""
    from chainwatch.analysis.engine import Engine
    from chainwatch.analysis.rulecheck import run_cases
    from chainwatch.analysis.rules import builtin_rules, load_rule_paths, load_rules
    from chainwatch.output.escape import one_line as text_line
    from chainwatch.output.escape import plain

    try:
        load_rules(paths or [])  # ids must not clash with the built-in rules
        rules = load_rule_paths(paths) if paths else builtin_rules()
        results = run_cases(rules, Engine(rules))
    except ChainwatchError as exc:
        err.print(plain(f"error: {exc}"), markup=False, soft_wrap=True)
        raise typer.Exit(exc.exit_code) from exc
    failed = [c for c in results if not c.passed]
    for case in failed:
        shown = text_line(case.text)
        shown = shown if len(shown) <= 120 else shown[:119] + "…"
        what = "did not fire" if case.kind == "positive" else "fired"
        typer.echo(f"FAIL {plain(case.rule.id)} {case.kind} case {case.index} {what}: "
                   f"{shown}  ({plain(case.rule.origin)})")
    if not quiet or failed:
        summary = (f"{plural(len(rules), 'rule')}, {plural(len(results), 'case')}: "
                   + (f"{len(failed)} failed" if failed else "all passed"))
        err.print(plain(summary), markup=False, soft_wrap=True)
    if failed:
        raise typer.Exit(1)
