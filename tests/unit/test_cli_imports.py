"""The command line starts without the libraries only some commands need (issue 14).

Each check runs in a new interpreter and reads ``sys.modules`` there: this process has long
imported everything. The figures themselves are in bench/startup.py, not here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli_runner import chainwatch, clean_env
from tests.helpers import make_tgz, manifest

#: what no command needs to start, parse its options or print its help
HEAVY = ("sqlalchemy", "starlette", "uvicorn", "stix2", "jinja2", "httpx", "yara", "tree_sitter",
         "yaml", "prometheus_client", "cyclonedx")

PROBE = """
import json, sys
argv = json.loads(sys.argv[1])
if argv is None:
    import chainwatch.cli
else:
    sys.argv = ["chainwatch", *argv]
    from chainwatch.cli import main
    try:
        main()
    except SystemExit:
        pass
sys.stdout.flush()
print("\\n" + json.dumps(sorted({m.split(".")[0] for m in sys.modules})), file=sys.__stderr__)
"""


def loaded(tmp_path: Path, argv: list[str] | None) -> set[str]:
    """Top-level packages a new process holds after importing the CLI (argv None) or after
    running ``chainwatch ARGV``."""
    env = clean_env(tmp_path)
    env.pop("PYTHONPATH", None)
    done = subprocess.run([sys.executable, "-c", PROBE, json.dumps(argv)], capture_output=True,
                          text=True, env=env, timeout=120, check=False,
                          cwd=Path(__file__).resolve().parents[2])
    last = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ""
    assert last.startswith("["), done.stderr[-2000:]
    return set(json.loads(last))


@pytest.mark.parametrize("argv", [None, ["--version"], ["--help"], ["scan", "--help"],
                                  ["check", "--help"], ["db", "stats", "--help"]],
                         ids=["import", "version", "help", "scan-help", "check-help", "db-help"])
def test_starting_the_cli_imports_no_heavy_library(tmp_path: Path, argv: list[str] | None) -> None:
    held = loaded(tmp_path, argv)
    assert "typer" in held and "chainwatch" in held  # the probe sees what a run imports
    assert sorted(held & set(HEAVY)) == []


def test_import_and_version_do_not_load_rich(tmp_path: Path) -> None:
    # rich draws help screens, tables and progress; printing the version needs none of it
    assert "rich" not in loaded(tmp_path, None)
    assert "rich" not in loaded(tmp_path, ["--version"])
    assert "rich" in loaded(tmp_path, ["--help"])  # the probe can see rich when it is used


def test_a_command_still_imports_what_it_needs(tmp_path: Path) -> None:
    # lazy, not missing: running db stats opens the database through SQLAlchemy
    held = loaded(tmp_path, ["db", "stats", "--db", f"sqlite:///{tmp_path / 'cw.db'}"])
    assert "sqlalchemy" in held


def probe_package(folder: Path, name: str = "cw-startup-probe") -> Path:
    tgz = folder / f"{name}-1.0.0.tgz"
    tgz.write_bytes(make_tgz({"package.json": manifest(name, "1.0.0", main="index.js"),
                              "index.js": "module.exports = (a, b) => a + b;\n"}))
    return tgz


def test_a_scan_with_nothing_stored_opens_no_database(tmp_path: Path) -> None:
    tgz = probe_package(tmp_path)
    held = loaded(tmp_path, ["scan", str(tgz), "--against", "none", "--offline", "-q"])
    assert "chainwatch" in held and "sqlalchemy" not in held
    assert not (tmp_path / "data" / "chainwatch.db").exists()  # and creates none
    assert "httpx" not in held  # nor an HTTP client it never sends a request with


def test_a_scan_still_asks_the_default_database_once_it_holds_something(tmp_path: Path) -> None:
    osv = tmp_path / "osv"
    osv.mkdir()
    (osv / "MAL-2099-7.json").write_text(json.dumps({
        "id": "MAL-2099-7", "summary": "Malicious code in cw-held-probe (npm)",
        "affected": [{"package": {"ecosystem": "npm", "name": "cw-held-probe"},
                      "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}]}]}]}))
    env = clean_env(tmp_path)
    assert chainwatch("db", "import", str(osv), env=env).returncode == 0  # the default file
    assert (tmp_path / "data" / "chainwatch.db").exists()
    tgz = probe_package(tmp_path, "cw-held-probe")
    done = chainwatch("scan", str(tgz), "--against", "none", "--offline", "-f", "json", env=env)
    assert done.returncode == 1, done.stderr
    assert "MAL-2099-7" in done.stdout
