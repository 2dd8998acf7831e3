"""One decision per package version per environment (issue 12 B, item 5).

Before: a project with ``package-lock.json`` and an installed ``node_modules`` got every
decision twice, and GitHub annotations pointed at the ``node_modules`` folder (which GitHub
cannot annotate). A package present only in node_modules (installed beside the lockfile) must
still be judged.
"""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from chainwatch.cli import app
from chainwatch.gate.environments import merge_projects, project_of
from chainwatch.model import Environment, InstalledPackage


def installed(root: Path, name: str, version: str) -> None:
    folder = root / "node_modules" / name
    folder.mkdir(parents=True)
    (folder / "package.json").write_text(json.dumps({"name": name, "version": version}))


def make_project(root: Path) -> None:
    root.mkdir(parents=True)
    (root / "package.json").write_text(json.dumps({"name": "app", "dependencies": {
        "debug": "4.4.2"}}))
    (root / "package-lock.json").write_text(json.dumps({
        "name": "app", "lockfileVersion": 3, "packages": {
            "": {"dependencies": {"debug": "4.4.2"}},
            "node_modules/debug": {"version": "4.4.2"}}}))
    installed(root, "debug", "4.4.2")
    installed(root, "chalk", "5.6.1")  # installed by hand, not in the lockfile


def run(tmp_path: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, [
        "check", "--offline", "--no-scan", "--db", f"sqlite:///{tmp_path / 'cw.db'}",
        "--cache-dir", str(tmp_path / "c"), *args])
    assert "Traceback" not in result.output
    return result.exit_code, result.stdout


def test_lockfile_and_node_modules_are_one_environment(tmp_path: Path) -> None:
    make_project(tmp_path / "app")
    code, out = run(tmp_path, str(tmp_path / "app"), "-f", "json")
    assert code == 1
    doc = json.loads(out)
    blocks = [(d["name"], d["version"], d["source"]) for d in doc["decisions"]
              if d["rule"] == "known-bad"]
    lock = str(tmp_path / "app" / "package-lock.json")
    assert sorted(blocks) == [("chalk", "5.6.1", lock), ("debug", "4.4.2", lock)]


def test_github_annotations_point_at_the_lockfile_not_a_folder(tmp_path: Path) -> None:
    make_project(tmp_path / "app")
    _, out = run(tmp_path, str(tmp_path / "app"), "-f", "github")
    errors = [line for line in out.splitlines() if line.startswith("::error")]
    assert len(errors) == 2
    assert all("package-lock.json" in line and "node_modules," not in line for line in errors)


def test_two_projects_stay_two_environments(tmp_path: Path) -> None:
    make_project(tmp_path / "a")
    make_project(tmp_path / "b")
    _, out = run(tmp_path, str(tmp_path), "-f", "json")
    sources = {d["source"] for d in json.loads(out)["decisions"] if d["name"] == "debug"
               and d["rule"] == "known-bad"}
    assert sources == {str(tmp_path / "a" / "package-lock.json"),
                       str(tmp_path / "b" / "package-lock.json")}


def test_node_modules_alone_is_still_checked(tmp_path: Path) -> None:
    root = tmp_path / "app"
    installed(root, "debug", "4.4.2")
    code, _ = run(tmp_path, str(root))
    assert code == 1


def test_a_version_listed_twice_in_one_lockfile_is_one_decision() -> None:
    env = Environment("x", "package-lock", "app/package-lock.json", (
        InstalledPackage("debug", "4.4.2", paths=(("a", "debug"),)),
        InstalledPackage("debug", "4.4.2", paths=(("b", "debug"),))))
    nm = Environment("y", "node_modules", "app/node_modules", (
        InstalledPackage("debug", "4.4.2"), InstalledPackage("ms", "2.1.3")))
    merged = merge_projects([env, nm])
    assert len(merged) == 1 and merged[0].source == "app/package-lock.json"
    assert [(p.name, p.version) for p in merged[0].packages] == [
        ("debug", "4.4.2"), ("debug", "4.4.2"), ("ms", "2.1.3")]
    assert project_of(nm) == project_of(env) == "app"
    from chainwatch.gate.check import Checker
    from chainwatch.gate.policy import Policy
    from chainwatch.intel import BuiltinKnownBad

    placed = Checker(Policy(min_age="off", install_scripts="off", new_install_script="off",
                            trust_downgrade="off", publisher_change="off",
                            remote_dependency="off"),
                     None, BuiltinKnownBad()).check(merged)
    assert [(p.decision.name, p.decision.rule) for p in placed] == [("debug", "known-bad")]
