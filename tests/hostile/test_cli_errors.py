"""Bad input on the command line is one clear line and exit 2, never a traceback."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from chainwatch.errors import RegistryError, UsageError, describe_failure
from tests.cli_runner import chainwatch, clean_env


def run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return chainwatch(*args, env=clean_env(tmp_path), cwd=tmp_path)


@pytest.mark.parametrize("db", ["notaurl", "mysql://u@127.0.0.1/x", "sqlite:////nonexistent/x/y.db",
                                "BINARY"])
@pytest.mark.parametrize("command", [["db", "stats"], ["incidents"], ["report"]])
def test_a_bad_database_is_one_line_and_exit_2(tmp_path: Path, db: str, command: list[str]) -> None:
    if db == "BINARY":
        junk = tmp_path / "junk.db"
        junk.write_bytes(bytes(range(256)) * 64)
        db = f"sqlite:///{junk}"
    done = run(tmp_path, *command, "--db", db)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().startswith("error:")
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_describe_failure_maps_kinds_to_exit_codes() -> None:
    import httpx

    assert describe_failure(UsageError("bad")) == ("bad", 2)
    assert describe_failure(RegistryError("down"))[1] == 3
    assert describe_failure(httpx.ConnectError("refused"))[1] == 3
    assert describe_failure(RecursionError())[1] == 2
    message, code = describe_failure(KeyError("x"))
    assert code == 2 and "bug in chainwatch" in message


@pytest.mark.parametrize(("args", "env", "said"), [
    (["check", ".", "--registry", "http://[::1"], {}, "registry: not a URL"),
    (["check", ".", "--registry", "http://u:S3CRET@h.invalid:99999/"], {}, "registry: not a URL"),
    (["scan", "chalk", "--registry", "ftp://h.invalid/"], {}, "not an http(s) URL"),
    (["check", "."], {"CHAINWATCH_PACKUMENT_TTL": "99999999999d"}, "duration too long"),
    (["exposure", "--query", "@@"], {}, "invalid package name"),
])
def test_bad_settings_an_attacker_found_are_one_line_and_exit_2(
        tmp_path: Path, args: list[str], env: dict[str, str], said: str) -> None:
    """Before: "internal error (ValueError …)" for a bad registry URL or a huge duration, and
    exit 0 for an invalid name given to exposure --query."""
    (tmp_path / "package.json").write_text('{"name": "p", "dependencies": {"ms": "2.1.3"}}')
    done = chainwatch(*args, env=clean_env(tmp_path, **env), cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert said in done.stderr and "internal error" not in done.stderr
    assert "S3CRET" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
