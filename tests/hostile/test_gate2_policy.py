"""Policy files are validated, and exceptions are visible (issue 12 B, item 2).

Before: ``[minage]`` or ``duraton = "7d"`` was ignored without a word, so a team believed it
had a 7-day quarantine while the 48 h default applied; an applied exception left no trace in
any output, and an expired one vanished silently.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from chainwatch.cli import app
from chainwatch.errors import UsageError
from chainwatch.gate.policy import load_policy


@pytest.mark.parametrize("text, named, suggested", [
    ('[minage]\nduration = "7d"\n', "[minage]", "min-age"),
    ('[min-age]\nduraton = "7d"\n', "duraton", "duration"),
    ('[scan]\nsuspicous = "block"\n', "suspicous", "suspicious"),
    ('[scan]\nsuspicious = "blok"\n', "blok", "block"),
    ('[install-scripts]\nnew_in_bump = "off"\n', "new_in_bump", "new-in-bump"),
    ('offline = "blocked"\n', "blocked", "block"),
    ('[[exceptions]]\npackage = "a@1"\nreson = "x"\nexpires = 2030-01-01\n', "reson", "reason"),
])
def test_unknown_section_key_or_value_is_named_with_a_did_you_mean(
        tmp_path: Path, text: str, named: str, suggested: str) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(text)
    with pytest.raises(UsageError) as caught:
        load_policy(path)
    message = str(caught.value)
    assert named in message and f"did you mean '{suggested}'" in message
    assert str(path) in message
    result = CliRunner().invoke(app, ["policy", "show", "--policy", str(path)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert named in result.output


@pytest.mark.parametrize("text", [
    '[min-age]\nduration = 7\n',
    '[min-age]\nexclude = "left-pad"\n',
    '[[exceptions]]\npackage = "a@1"\nreason = "x"\nexpires = "soon"\n',
    'known-bad = "block"\n',
])
def test_wrong_types_are_usage_errors_not_tracebacks(tmp_path: Path, text: str) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(text)
    result = CliRunner().invoke(app, ["policy", "show", "--policy", str(path)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.output.startswith("error: ")


def test_a_binary_policy_file_is_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_bytes(b"\xff\xfe\x00garbage\x89PNG")
    result = CliRunner().invoke(app, ["policy", "show", "--policy", str(path)])
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_missing_policy_or_import_source_is_one_plain_line(tmp_path: Path) -> None:
    """Not ``[Errno 2] No such file or directory: '...'`` (the path twice, Python's wording)."""
    missing = tmp_path / "nope.toml"
    result = CliRunner().invoke(app, ["policy", "show", "--policy", str(missing)])
    assert result.exit_code == 2 and "Errno" not in result.output
    assert result.output.count(str(missing)) == 1
    source = tmp_path / "nope.json"
    result = CliRunner().invoke(app, ["db", "import", str(source), "--db",
                                      f"sqlite:///{tmp_path / 'db.sqlite'}"])
    assert result.exit_code == 2 and "record" not in result.output
    assert result.output.strip() == f"error: {source}: cannot read: no such file or folder"
    assert not (tmp_path / "db.sqlite").exists()


def test_a_valid_policy_loads(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text('offline = "block"\n[min-age]\nduration = "7d"\nexclude = ["@corp/*"]\n'
                    '[scan]\nsuspicious = "block"\non_error = "warn"\n')
    policy = load_policy(path)
    assert policy.offline == "block" and policy.min_age_duration == timedelta(days=7)
    assert policy.scan_suspicious == "block" and policy.age_exempt("@corp/x")


def lock(tmp_path: Path, version: str) -> Path:
    project = tmp_path / "project"
    project.mkdir(exist_ok=True)
    (project / "package-lock.json").write_text(json.dumps({
        "name": "app", "lockfileVersion": 3, "packages": {
            "": {"dependencies": {"debug": version}},
            "node_modules/debug": {"version": version}}}))
    return project


def check(tmp_path: Path, policy: str, *args: str) -> tuple[int, str]:
    path = tmp_path / "policy.toml"
    path.write_text(policy)
    result = CliRunner().invoke(app, [
        "check", str(tmp_path / "project"), "--policy", str(path), "--offline", "--no-scan",
        "--db", f"sqlite:///{tmp_path / 'cw.db'}", "--cache-dir", str(tmp_path / "c"), *args])
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def exception(expires: str) -> str:
    return (f'[[exceptions]]\npackage = "debug@4.4.2"\nreason = "lab fixture SEC-42"\n'
            f'expires = "{expires}"\n')


FUTURE = (datetime.now(UTC) + timedelta(days=30)).date().isoformat()
PAST = (datetime.now(UTC) - timedelta(days=3)).date().isoformat()


@pytest.mark.parametrize("fmt", ["table", "json", "sarif", "github"])
def test_an_applied_exception_appears_in_every_format_with_its_reason(
        tmp_path: Path, fmt: str) -> None:
    lock(tmp_path, "4.4.2")
    code, output = check(tmp_path, exception(FUTURE), "--format", fmt)
    assert code == 0, output
    assert "lab fixture SEC-42" in output
    if fmt == "json":
        doc = json.loads(output[output.index("{"):])
        (row,) = [d for d in doc["decisions"] if d["name"] == "debug"]
        assert row["action"] == "allow" and row["rule"] == "exception"
        assert doc["summary"]["excepted"] == 1 and doc["summary"]["blocked"] == 0
    if fmt == "sarif":
        doc = json.loads(output[output.index("{"):])
        (result,) = doc["runs"][0]["results"]
        assert result["level"] == "note"
        assert "SEC-42" in result["suppressions"][0]["justification"]
    if fmt == "github":
        assert "::notice " in output


def test_an_expired_exception_is_warned_about_and_no_longer_applies(tmp_path: Path) -> None:
    lock(tmp_path, "4.4.2")
    code, output = check(tmp_path, exception(PAST))
    assert code == 1  # known-bad blocks again
    assert "expired" in output and "debug@4.4.2" in output and PAST in output
