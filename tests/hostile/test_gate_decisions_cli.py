"""``chainwatch check`` keeps every decision it reports in the database it uses, and a database
that fails while writing changes neither its answer nor its output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select
from typer.testing import CliRunner

from chainwatch.cli import app
from chainwatch.gate.decisions import DecisionLog, decisions

LOCK = json.dumps({"name": "app", "lockfileVersion": 3, "packages": {
    "": {"dependencies": {"debug": "^4.4.0", "chalk": "^5.6.0"}},
    "node_modules/debug": {"version": "4.4.2"},
    "node_modules/chalk": {"version": "5.6.1"}}})


def run(tmp_path: Path, *extra: str) -> tuple[int, str, str]:
    project = tmp_path / "project"
    project.mkdir(exist_ok=True)
    (project / "package-lock.json").write_text(LOCK)
    result = CliRunner().invoke(app, [
        "check", "--offline", "--no-scan", "--db", f"sqlite:///{tmp_path / 'cw.db'}",
        "--cache-dir", str(tmp_path / "cache"), "--format", "json", *extra, str(project)])
    assert "Traceback" not in result.output
    return result.exit_code, result.stdout, result.stderr


def stored(tmp_path: Path) -> list[dict[str, object]]:
    engine = create_engine(f"sqlite:///{tmp_path / 'cw.db'}")
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(decisions)).mappings()]


def test_check_records_every_block_it_reports_with_the_lockfile(tmp_path: Path) -> None:
    code, output, _ = run(tmp_path)
    assert code == 1
    reported = {(d["name"], d["version"], d["rule"])
                for d in json.loads(output)["decisions"] if d["action"] == "block"}
    assert ("debug", "4.4.2", "known-bad") in reported and ("chalk", "5.6.1", "known-bad") in reported
    rows = stored(tmp_path)
    assert {(r["package"], r["version"], r["rule"]) for r in rows if r["action"] == "block"} == reported
    assert all(r["origin"] == "check" for r in rows)
    assert {r["source"] for r in rows} == {str(tmp_path / "project" / "package-lock.json")}
    run(tmp_path)  # every run of check is its own record
    assert len(stored(tmp_path)) == 2 * len(rows)


def test_a_failing_database_changes_neither_the_exit_code_nor_the_report(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = run(tmp_path)

    def broken(self: DecisionLog, rows: list[dict[str, object]]) -> None:
        raise OSError("disk I/O error")

    monkeypatch.setattr(DecisionLog, "_insert", broken)
    (tmp_path / "cw.db").unlink()
    code, output, errors = run(tmp_path)
    assert (code, output) == before[:2]
    # and one line on stderr says so (without the statement and the text it carried)
    assert errors.count("gate decisions not kept") == 1
    assert "OSError: disk I/O error" in errors and "INSERT" not in errors


def test_an_allow_by_policy_exception_is_kept_too(tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text('[[exceptions]]\npackage = "debug@4.4.2"\nreason = "pinned while we '
                      'investigate"\nexpires = "2099-01-01"\n')
    code, _, _ = run(tmp_path, "--policy", str(policy))
    assert code == 1  # chalk@5.6.1 is still blocked
    kept = {(r["package"], r["action"], r["rule"]) for r in stored(tmp_path)}
    assert ("debug", "allow", "exception") in kept and ("chalk", "block", "known-bad") in kept


def test_no_database_in_use_keeps_nothing_and_creates_none(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from chainwatch.cli.gate import _decision_log

    monkeypatch.delenv("CHAINWATCH_DB", raising=False)
    monkeypatch.setenv("CHAINWATCH_DATA_DIR", str(tmp_path / "data"))
    assert _decision_log(None, None) is None
    assert not (tmp_path / "data" / "chainwatch.db").exists()
    given = _decision_log(None, f"sqlite:///{tmp_path / 'given.db'}")
    assert given is not None and given.warn is not None
