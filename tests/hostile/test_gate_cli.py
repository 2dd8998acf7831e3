"""The proxy refuses to start in a way that would hand out Host-header URLs or an open
decisions endpoint to the network (issue 11, item 3)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from chainwatch.cli import app
from chainwatch.gate.proxy import loopback_host


@pytest.mark.parametrize("args, message", [
    (["--listen", "0.0.0.0:4873"], "needs --public-url"),
    (["--listen", "[::]:4873"], "needs --public-url"),
    (["--listen", "127.0.0.1:4873", "--tarball-hosts", "https://"], "not a host"),
    (["--listen", "127.0.0.1:4873", "--upstream", "file:///etc"], "not an http(s) upstream"),
    (["--listen", "127.0.0.1:4873", "--memory", "lots"], "--memory"),
    (["--listen", "127.0.0.1:4873", "--token-file", "/nonexistent/token"], "--token-file"),
])
def test_unsafe_proxy_settings_exit_2_with_one_line(args: list[str], message: str,
                                                    tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["proxy", "--no-scan", "--db", f"sqlite:///{tmp_path / 'x.db'}",
                                      *args])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_loopback_hosts() -> None:
    assert loopback_host("127.0.0.1") and loopback_host("localhost") and loopback_host("[::1]")
    assert not loopback_host("0.0.0.0") and not loopback_host("10.0.0.5")
    assert not loopback_host("gate.example.test")
