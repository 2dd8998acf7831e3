"""``chainwatch serve``'s refusals: one line and exit 2, before anything listens."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from chainwatch.cli.serve import read_token_file
from tests.cli_runner import chainwatch, clean_env


def serve(tmp_path: Path, *args: str, **env: str) -> tuple[int, str]:
    result = chainwatch("serve", "--db", f"sqlite:///{tmp_path / 'db.sqlite'}", *args,
                        env=clean_env(tmp_path, **env))
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return result.returncode, lines[0]


def test_beyond_loopback_needs_a_token(tmp_path: Path) -> None:
    code, line = serve(tmp_path, "--listen", "0.0.0.0:18089")
    assert code == 2 and "needs a token" in line


def test_a_token_file_others_can_read_is_refused(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("abc\n")
    token.chmod(0o644)
    code, line = serve(tmp_path, "--listen", "0.0.0.0:18089", "--token-file", str(token))
    assert code == 2 and "chmod 600" in line and "abc" not in line


def test_bad_listen_and_busy_port(tmp_path: Path) -> None:
    code, line = serve(tmp_path, "--listen", "localhost")
    assert code == 2 and "HOST:PORT" in line
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        code, line = serve(tmp_path, "--listen", f"127.0.0.1:{busy.getsockname()[1]}")
    assert code == 2 and "cannot listen there" in line


def test_read_token_file(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("  s3cret \n")
    token.chmod(0o600)
    assert read_token_file(token) == "s3cret"
    token.chmod(0o640)
    assert read_token_file(token) == "s3cret"  # the owner's group may read it
    token.chmod(0o620)
    with pytest.raises(ValueError, match="other users"):
        read_token_file(token)
    token.chmod(0o600)
    token.write_text("")
    with pytest.raises(ValueError, match="empty"):
        read_token_file(token)
    token.write_text("x" * 5000)
    with pytest.raises(ValueError, match="larger"):
        read_token_file(token)
    with pytest.raises(ValueError, match="not a regular file"):
        read_token_file(tmp_path)
    with pytest.raises(ValueError):
        read_token_file(tmp_path / "missing")


def test_beyond_loopback_a_short_token_is_refused(tmp_path: Path) -> None:
    code, line = serve(tmp_path, "--listen", "0.0.0.0:18089", CHAINWATCH_TOKEN="a")
    assert code == 2 and "at least 32 characters" in line and "secrets.token_urlsafe" in line
    token = tmp_path / "token"
    token.write_text("x" * 31 + "\n")
    token.chmod(0o600)
    code, line = serve(tmp_path, "--listen", "0.0.0.0:18089", "--token-file", str(token))
    assert code == 2 and "at least 32 characters" in line and "x" * 31 not in line


def test_on_loopback_a_short_token_is_a_warning(tmp_path: Path) -> None:
    with socket.socket() as busy:  # busy: the server stops right after the warning
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        result = chainwatch("serve", "--db", f"sqlite:///{tmp_path / 'db.sqlite'}",
                            "--listen", f"127.0.0.1:{busy.getsockname()[1]}",
                            env=clean_env(tmp_path, CHAINWATCH_TOKEN="short"))
    assert result.returncode == 2 and "cannot listen there" in result.stderr
    assert "warning: the token has 5 characters, fewer than 32" in result.stderr
