"""Every command's --help describes every option with a natural metavar, shows examples,
and cuts nothing off (issue 12 F)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from chainwatch.cli import app

ROOT = typer.main.get_command(app)
CHOICES = {"--format", "--fail-on", "--color", "--alert-on", "--log-format"}


def leaves(cmd: Any, path: list[str]) -> Iterator[tuple[list[str], Any]]:
    subs = getattr(cmd, "commands", None)
    if subs:
        for name, sub in subs.items():
            yield from leaves(sub, [*path, name])
    else:
        yield path, cmd


COMMANDS = {" ".join(path): cmd for path, cmd in leaves(ROOT, [])}


def help_text(path: str) -> str:
    result = CliRunner().invoke(app, [*path.split(), "--help"], env={"COLUMNS": "250",
                                                                     "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    return result.output


def test_the_sweep_covers_every_command() -> None:
    assert {"scan", "inventory", "exposure", "check", "proxy", "watch", "incidents", "report",
            "db import", "db stats", "db verdicts list", "db verdicts remove", "rules list", "rules test",
            "policy show"} <= set(COMMANDS)


@pytest.mark.parametrize("path", list(COMMANDS))
def test_every_option_has_help_and_a_natural_metavar(path: str) -> None:
    text = help_text(path)
    for param in COMMANDS[path].params:
        assert (param.help or "").strip(), f"{path} {param.opts}: no description"
        for opt in param.opts:
            if opt.startswith("-"):
                assert opt in text, f"{path}: {opt} missing from --help"
        if param.param_type_name != "option" or param.opts[0] in CHOICES:
            continue
        metavar = param.metavar
        assert metavar is not None, f"{path} {param.opts}: no metavar (shows the type name)"
        if param.is_flag or param.count:
            assert metavar == "", f"{path} {param.opts}: a flag takes no value"
        else:
            assert metavar.replace("@", "").replace(":", "").isupper(), metavar
    options = text.split("Options", 1)[1]
    assert "<list[" not in options and "<str>" not in options and "<path>" not in options


@pytest.mark.parametrize("path", list(COMMANDS))
def test_every_command_shows_examples(path: str) -> None:
    text = help_text(path)
    assert "Examples:" in text
    after = text.split("Examples:", 1)[1]
    assert f"chainwatch {path}" in after, after


@pytest.mark.parametrize("path", list(COMMANDS))
def test_nothing_in_a_help_text_is_eaten_as_markup(path: str) -> None:
    text = help_text(path)
    for param in COMMANDS[path].params:
        raw = " ".join((param.help or "").replace("\\[", "[").split())
        shown = " ".join(text.replace("│", " ").split())
        assert raw in shown, f"{path} {param.opts}: help shown cut or changed: {raw!r}"


def test_smtp_help_shows_the_whole_url_form() -> None:
    assert "smtp[s]://[user:pass@]host[:port]?from=ADDR&to=ADDR" in help_text("watch")


@pytest.mark.parametrize("path", ["", *COMMANDS])
def test_help_shows_what_a_person_types_not_python_types(path: str) -> None:
    text = help_text(path) if path else CliRunner().invoke(
        app, ["--help"], env={"COLUMNS": "250", "NO_COLOR": "1"}).output
    assert "<bool>" not in text and "<list[" not in text and "<str>" not in text, text
    assert "--help " in text  # the flag itself is still there


def groups(cmd: Any, path: list[str]) -> Iterator[tuple[str, Any]]:
    subs = getattr(cmd, "commands", None)
    if subs:
        yield " ".join(path), cmd
        for name, sub in subs.items():
            yield from groups(sub, [*path, name])


GROUPS = dict(groups(ROOT, []))


@pytest.mark.parametrize("path", list(GROUPS))
def test_every_command_summary_is_one_whole_sentence_on_its_line(path: str) -> None:
    """The first line of each command's docstring is its summary in the list: a short, whole
    sentence, never cut mid-sentence onto a second line."""
    text = help_text(path)
    panel = text.split("Commands", 1)[1].splitlines()[1:]
    rows = [line.strip().strip("│").strip() for line in panel if line.startswith("│")]
    assert len(rows) == len(GROUPS[path].commands), rows  # no continuation lines
    for name, row in zip(GROUPS[path].commands, rows, strict=True):
        assert row.startswith(name + " "), row
        assert row.endswith("."), f"{path} {name}: summary does not end a sentence: {row!r}"
        assert len(row) - len(name) <= 95, f"{path} {name}: summary too long: {row!r}"
