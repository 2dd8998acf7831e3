"""`scan A --against B` where B is another package is said, not silently compared."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from chainwatch.cli import app
from tests.helpers import make_tgz, manifest


def _tarball(folder: Path, name: str) -> Path:
    path = folder / f"{name}.tgz"
    path.write_bytes(make_tgz({"package.json": manifest(name), "index.js": "module.exports = 1\n"}))
    return path


def test_a_baseline_of_another_name_is_named_and_noted(tmp_path: Path) -> None:
    target, other = _tarball(tmp_path, "pkg-a"), _tarball(tmp_path, "pkg-b")
    db = f"sqlite:///{tmp_path / 'db.sqlite'}"
    result = CliRunner().invoke(app, ["scan", str(target), "--against", str(other), "--db", db])
    assert result.exit_code == 0, result.output
    assert "pkg-a@1.0.0 vs pkg-b@1.0.0" in result.output
    assert "is another package (pkg-b, not pkg-a)" in result.output


def test_a_baseline_of_the_same_name_shows_only_its_version(tmp_path: Path) -> None:
    target = _tarball(tmp_path, "pkg-a")
    same = tmp_path / "old" / "pkg-a.tgz"
    same.parent.mkdir()
    same.write_bytes(make_tgz({"package.json": manifest("pkg-a", "0.9.0"), "index.js": "1\n"}))
    db = f"sqlite:///{tmp_path / 'db.sqlite'}"
    result = CliRunner().invoke(app, ["scan", str(target), "--against", str(same), "--db", db])
    assert result.exit_code == 0, result.output
    assert "pkg-a@1.0.0 vs 0.9.0" in result.output and "another package" not in result.output
