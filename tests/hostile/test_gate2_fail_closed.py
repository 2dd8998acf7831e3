"""``check`` fails closed on what it cannot read or did not find (issue 12 B, item 1).

Before: ``chainwatch check`` on a folder with no lockfile printed "0 versions checked" and exited 0,
so a CI job pointed at the wrong folder (or one whose lockfile an attacker deleted) passed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from chainwatch.cli import app

CONFLICTED = {
    "package-lock.json": """{
  "name": "app",
  "lockfileVersion": 3,
  "packages": {
    "": {"dependencies": {"debug": "^4.4.0"}},
<<<<<<< HEAD
    "node_modules/debug": {"version": "4.4.2"}
=======
    "node_modules/debug": {"version": "4.4.1"}
>>>>>>> feature
  }
}
""",
    "yarn.lock": """# yarn lockfile v1


<<<<<<< HEAD
debug@^4.4.0:
  version "4.4.2"
  resolved "https://registry.yarnpkg.com/debug/-/debug-4.4.2.tgz"
=======
debug@^4.4.0:
  version "4.4.1"
  resolved "https://registry.yarnpkg.com/debug/-/debug-4.4.1.tgz"
>>>>>>> feature
""",
    "pnpm-lock.yaml": """lockfileVersion: '9.0'
importers:
  .:
    dependencies:
      debug:
        specifier: ^4.4.0
<<<<<<< HEAD
        version: 4.4.2
=======
        version: 4.4.1
>>>>>>> feature
packages:
  debug@4.4.2:
    resolution: {integrity: sha512-x}
snapshots:
  debug@4.4.2: {}
""",
}
CLEAN_LOCK = json.dumps({"name": "app", "lockfileVersion": 3, "packages": {
    "": {"dependencies": {"ms": "^2.1.3"}}, "node_modules/ms": {"version": "2.1.3"}}})


def run(tmp_path: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["check", "--offline", "--no-scan", "--db",
                                      f"sqlite:///{tmp_path / 'cw.db'}", "--cache-dir",
                                      str(tmp_path / "cache"), *args])
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def test_no_lockfile_is_nothing_to_check_exit_2(tmp_path: Path) -> None:
    empty = tmp_path / "project"
    empty.mkdir()
    (empty / "README.md").write_text("no lockfile here\n")
    code, output = run(tmp_path, str(empty))
    assert code == 2
    assert "nothing to check" in output


def test_a_manifest_with_only_ranges_is_nothing_to_check(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "package.json").write_text(json.dumps({"dependencies": {"debug": "^4.4.0"}}))
    code, output = run(tmp_path, str(project))
    assert code == 2 and "nothing to check" in output


@pytest.mark.parametrize("lockfile", sorted(CONFLICTED))
def test_merge_conflicted_lockfile_pinning_debug_442_does_not_pass(tmp_path: Path,
                                                                   lockfile: str) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / lockfile).write_text(CONFLICTED[lockfile])
    code, output = run(tmp_path, str(project))
    assert code == 2
    assert lockfile in output and "error:" in output


def test_allow_unreadable_downgrades_to_a_warning_and_judges_the_rest(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "sub").mkdir(parents=True)
    (project / "package-lock.json").write_text(CLEAN_LOCK)
    (project / "sub" / "package-lock.json").write_text(CONFLICTED["package-lock.json"])
    # --offline with an empty cache: the registry rule is opted down to a warning here (by
    # default it blocks ms, and the run exits 1 for that)
    policy = tmp_path / "policy.toml"
    policy.write_text('offline = "warn"\n')
    code, output = run(tmp_path, str(project), "--policy", str(policy))
    assert code == 2  # default: an unread lockfile leaves the answer open
    code, output = run(tmp_path, str(project), "--allow-unreadable", "--policy", str(policy))
    assert code == 0
    assert "warning:" in output and "sub/package-lock.json" in output


def test_allow_unreadable_still_blocks_what_it_can_read(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "sub").mkdir(parents=True)
    (project / "package-lock.json").write_text(json.dumps({
        "name": "app", "lockfileVersion": 3, "packages": {
            "": {"dependencies": {"debug": "4.4.2"}}, "node_modules/debug": {"version": "4.4.2"}}}))
    (project / "sub" / "yarn.lock").write_text(CONFLICTED["yarn.lock"])
    code, _ = run(tmp_path, str(project), "--allow-unreadable")
    assert code == 1


def test_allow_unreadable_with_nothing_readable_is_still_exit_2(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "package-lock.json").write_text(CONFLICTED["package-lock.json"])
    code, _ = run(tmp_path, str(project), "--allow-unreadable")
    assert code == 2


def test_an_unreadable_lockfile_does_not_hide_the_pins_of_its_package_json(
        tmp_path: Path) -> None:
    """Before: with --allow-unreadable, a merge-conflicted package-lock.json beside a
    package.json pinning chalk@5.6.1 gave "nothing to check" (exit 2), and the error said
    "not valid JSON" instead of naming the conflict."""
    project = tmp_path / "broken"
    project.mkdir()
    (project / "package.json").write_text(json.dumps(
        {"name": "app", "dependencies": {"chalk": "5.6.1"}}))
    (project / "package-lock.json").write_text(
        '{\n<<<<<<< HEAD\n  "lockfileVersion": 3\n=======\n  "x": 1\n>>>>>>> theirs\n}\n')
    for extra in ([], ["--allow-unreadable"]):
        code, output = run(tmp_path, str(project), *extra)
        assert code == 1, output  # the known-bad pin is blocked either way
        assert "chalk@5.6.1" in output and "merge conflict" in output
