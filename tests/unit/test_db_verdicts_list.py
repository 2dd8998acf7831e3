"""`db verdicts list` lines its columns up whatever the length of the release names."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from chainwatch.cli import app
from tests.helpers import make_tgz, manifest


def test_columns_line_up(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'db.sqlite'}"
    for name in ("a", "@scope/a-much-longer-package-name"):
        path = tmp_path / f"{name.replace('/', '_')}.tgz"
        path.write_bytes(make_tgz({"package.json": manifest(name), "index.js": "module.exports = 1\n"}))
        assert CliRunner().invoke(app, ["scan", str(path), "--db", db]).exit_code == 0
    result = CliRunner().invoke(app, ["db", "verdicts", "list", "--db", db])
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if " benign " in line]
    assert len(rows) == 2
    assert len({row.index(" benign ") for row in rows}) == 1, rows
