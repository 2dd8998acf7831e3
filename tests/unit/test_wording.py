"""A new user's first hour: counts read as English ("1 package", never "1 packages") and what
chainwatch does not know is said, never shown as "?" (issue 12, new-user pass)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from chainwatch.cli import app
from chainwatch.incidents.render import render_list
from chainwatch.output.words import plural

#: a count of one followed by a plural noun
ONE_PLURAL = re.compile(r"(?<![\d.,])1 (?:[a-z-]+ )?(packages|findings|versions|environments|hits|"
                        r"files|problems|releases|sightings|advisories|records|attempts|rules|"
                        r"cases|labels)\b")


@pytest.mark.parametrize(("count", "noun", "expected"), [
    (0, "package", "0 packages"), (1, "package", "1 package"), (2, "package", "2 packages"),
    (1, "advisory", "1 advisory"), (3, "advisory", "3 advisories"), (1200, "file", "1,200 files"),
    (2, "sighting", "2 sightings")])
def test_plural(count: int, noun: str, expected: str) -> None:
    assert plural(count, noun) == expected


def test_the_sweep_pattern_catches_a_singular_count() -> None:
    assert ONE_PLURAL.search("1 of 1 environments hold")
    assert ONE_PLURAL.search("found 1 packages (0 dev)")
    assert not ONE_PLURAL.search("21 packages, 1 package, 1.5 versions")


def _project(tmp_path: Path, deps: dict[str, str]) -> Path:
    folder = tmp_path / "project"
    folder.mkdir()
    packages = {f"node_modules/{n}": {"version": v} for n, v in deps.items()}
    (folder / "package-lock.json").write_text(json.dumps({
        "name": "p", "version": "1.0.0", "lockfileVersion": 3,
        "packages": {"": {"name": "p", "version": "1.0.0", "dependencies": deps}, **packages}}))
    return folder


@pytest.mark.parametrize(("command", "expected", "code"), [
    (["inventory"], "(package-lock): 1 package (0 dev)", 0),
    (["exposure"], "1 of 1 environment holds known-bad versions (1 hit among 1 package)", 1),
    (["check", "--offline", "--no-scan"], "1 version checked: 1 blocked", 1),
])
def test_counts_of_one_read_as_english(tmp_path: Path, command: list[str], expected: str,
                                       code: int) -> None:
    folder = _project(tmp_path, {"debug": "4.4.2"})
    done = CliRunner().invoke(app, [*command, str(folder), "--db",
                                    f"sqlite:///{tmp_path / 'db.sqlite'}"],
                              env={"CHAINWATCH_CACHE_DIR": str(tmp_path / "cache")})
    assert done.exit_code == code, done.output
    assert expected in done.stdout
    assert not ONE_PLURAL.search(done.stdout + done.stderr), done.stdout + done.stderr


def test_incidents_say_unknown_never_a_question_mark() -> None:
    rows = [{"id": "INC-1a2b3c4d5e", "level": "malicious", "size": 1, "first_published": None,
             "hypothesis": "H1", "confidence": "low", "title": "Malicious release of 1 package"},
            {"id": "INC-2b3c4d5e6f", "level": "suspicious", "size": 3,
             "first_published": "2025-09-08T13:16:00+00:00", "hypothesis": "H2",
             "confidence": "high", "title": "Suspicious releases of 3 packages"}]
    text = render_list(rows)
    assert "?" not in text and not ONE_PLURAL.search(text)
    assert "INC-1a2b3c4d5e  malicious     1 release  publish time unknown" in text
    assert "3 releases  first published 2025-09-08T13:16:00+00:00" in text


def test_an_incident_of_one_release_says_release() -> None:
    from chainwatch.incidents.model import Incident, Observation

    one = Observation("left-padder", "1.0.1", "malicious", "verdict")
    two = Observation("left-padder", "1.0.2", "malicious", "verdict")
    assert Incident("INC-1", [one]).title.startswith("Malicious release of 1 package: ")
    assert Incident("INC-1", [one, two]).title.startswith("Malicious releases of 1 package: ")


def test_db_stats_counts_the_built_in_list_too(tmp_path: Path) -> None:
    done = CliRunner().invoke(app, ["db", "stats", "--db", f"sqlite:///{tmp_path / 'db.sqlite'}"])
    assert done.exit_code == 0
    assert re.match(r"0 advisories in sqlite:///\S+; the built-in list adds \d+ known-bad "
                    r"versions$", done.stdout.strip()), done.stdout


def test_a_query_nobody_held_says_so(tmp_path: Path) -> None:
    done = CliRunner().invoke(app, ["exposure", "--query", "chalk@5.6.1", "--db",
                                    f"sqlite:///{tmp_path / 'db.sqlite'}"])
    assert (done.exit_code, done.stdout) == (0, "chalk@5.6.1: no recorded environment held it\n")


def test_the_brief_of_one_release_reads_as_english() -> None:
    """Before: "1 malicious release(s) of 1 package(s) … were scanned" and "1 evidence items"."""
    from chainwatch.incidents import brief
    from chainwatch.incidents.model import Incident, Observation

    one = Observation("left-padder", "1.0.1", "malicious", "verdict")
    doc = brief.build(Incident("INC-1", [one]))
    text = json.dumps(doc)
    assert "(s)" not in text and not ONE_PLURAL.search(text)
    assert "1 malicious release of 1 package (left-padder@1.0.1) was" in doc["bluf"]["text"]


def test_confidence_and_exposure_sentences_read_as_english() -> None:
    """A first-day user read "Confidence is moderate because 1 evidence item;" and
    "0 of 1 environment hold known-bad versions"."""
    from chainwatch.incidents import brief
    from chainwatch.incidents.model import Incident, Observation
    from chainwatch.output.inventory import _held

    one = Observation("left-padder", "1.0.1", "malicious", "verdict")
    text = json.dumps(brief.build(Incident("INC-1", [one])))
    assert "because 1 evidence item;" not in text
    assert re.search(r"Confidence is \w+ because over \d+ evidence items?, ", text), text
    assert _held({"exposed": 0, "environments": 1}) == \
        "0 of 1 environment holds known-bad versions"
    assert _held({"exposed": 0, "environments": 3}) == "0 of 3 environments hold known-bad versions"
    assert _held({"exposed": 1, "environments": 3}) == "1 of 3 environments holds known-bad versions"
