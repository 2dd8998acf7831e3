"""Output for a person and for a pipe: no wrapping in a pipe, NO_COLOR and --color, -v shows
chainwatch's steps and not the HTTP libraries' debug lines."""

from __future__ import annotations

import io
import logging
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from chainwatch.model import Finding, Level, PackageRef, Severity, Verdict
from chainwatch.output.console import (
    NO_WRAP,
    ColorMode,
    output_width,
    setup_logging,
    use_color,
)
from chainwatch.output.table import render
from tests.unit.test_output_json import package, run

ANSI = re.compile(r"\x1b\[[0-9;]*m")
LONG = "a-very-long-package-name-" + "x" * 90


class FakeStream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def _verdict() -> Verdict:
    f = Finding(rule="CW-T", severity=Severity.HIGH, technique="exfiltration",
                capability="network", message="message " * 30, file="index.js", line=1,
                snippet="fetch('http://192.0.2.1/" + "p" * 150 + "')")
    return Verdict(target=PackageRef(LONG, "1.0.0"), level=Level.MALICIOUS, score=90,
                   explanation="explanation " * 20, findings=(f,), capabilities=())


@pytest.mark.parametrize(("mode", "no_color", "tty", "want"), [
    ("auto", None, True, True), ("auto", None, False, False), ("auto", "1", True, False),
    ("auto", "", True, True),  # an empty NO_COLOR is not set (no-color.org)
    ("always", "1", False, True), ("never", None, True, False)])
def test_colour_follows_flag_then_no_color_then_terminal(
        monkeypatch: pytest.MonkeyPatch, mode: str, no_color: str | None, tty: bool,
        want: bool) -> None:
    if no_color is None:
        monkeypatch.delenv("NO_COLOR", raising=False)
    else:
        monkeypatch.setenv("NO_COLOR", no_color)
    assert use_color(ColorMode(mode), FakeStream(tty)) is want


def test_width_is_the_terminals_or_unbounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "50")
    assert output_width(FakeStream(False)) == NO_WRAP
    assert output_width(FakeStream(True)) == 50


def test_a_table_for_a_pipe_never_wraps_and_has_no_trailing_padding() -> None:
    v = _verdict()
    piped = render([v], width=None)
    assert f"{LONG}@1.0.0" in piped.splitlines()[0]
    assert "explanation " * 19 in piped and v.findings[0].snippet in piped
    assert not any(line != line.rstrip() for line in piped.splitlines())
    narrow = render([v], width=60)  # the same on a 60-column terminal is folded
    assert f"{LONG}@1.0.0" not in narrow and max(map(len, narrow.splitlines())) <= 60


def test_levels_of_verbosity() -> None:
    try:
        setup_logging(1)
        assert logging.getLogger("chainwatch.scan").isEnabledFor(logging.DEBUG)
        for noisy in ("httpx", "httpcore", "httpcore.http11", "sqlalchemy.engine"):
            assert not logging.getLogger(noisy).isEnabledFor(logging.INFO), noisy
        setup_logging(2)
        assert logging.getLogger("httpcore.http11").isEnabledFor(logging.DEBUG)
        setup_logging(0)
        assert not logging.getLogger("chainwatch.scan").isEnabledFor(logging.INFO)
    finally:
        logging.basicConfig(level=logging.WARNING, force=True)
        logging.getLogger("chainwatch").setLevel(logging.NOTSET)


# -- the command line -------------------------------------------------------------------------
def test_cli_table_in_a_pipe_is_not_wrapped_at_any_columns(tmp_path: Path) -> None:
    pkg = package(tmp_path, "p-" + "n" * 100)
    done = run(tmp_path, "scan", str(pkg), "--against", "none", "--offline", "--no-remember",
               "--fail-on", "never", COLUMNS="40")
    assert done.returncode == 0, done.stderr
    assert f"p-{'n' * 100}@1.0.0 (no baseline)" in done.stdout.splitlines()[0]
    assert not ANSI.search(done.stdout) and not ANSI.search(done.stderr)


@pytest.mark.parametrize(("flag", "no_color", "coloured"), [
    (None, "1", False), (None, None, False), ("always", "1", True), ("never", None, False)])
def test_cli_color_flag_and_no_color(tmp_path: Path, flag: str | None, no_color: str | None,
                                     coloured: bool) -> None:
    pkg = package(tmp_path)
    args = ["scan", str(pkg), "--against", "none", "--offline", "--no-remember",
            "--fail-on", "never", *(["--color", flag] if flag else [])]
    done = run(tmp_path, *args, **({"NO_COLOR": no_color} if no_color else {}))
    assert done.returncode == 0, done.stderr
    assert bool(ANSI.search(done.stdout)) is coloured


def test_cli_rejects_an_unknown_color(tmp_path: Path) -> None:
    done = run(tmp_path, "scan", "x", "--color", "sometimes")
    assert done.returncode == 2 and "Traceback" not in done.stderr


class _NotFound(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b'{"error":"Not found"}'
        self.send_response(404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def registry() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NotFound)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def test_cli_verbose_shows_chainwatch_steps_not_http_debug(tmp_path: Path, registry: str) -> None:
    args = ["scan", "left-padder@1.0.0", "--registry", registry, "--no-remember"]
    once = run(tmp_path, *args, "-v")
    assert once.returncode == 2, once.stderr
    assert "chainwatch.scan: scanning left-padder@1.0.0" in once.stderr
    assert not re.search(r"httpx|httpcore|h11", once.stderr), once.stderr
    twice = run(tmp_path, *args, "-vv")  # the libraries' lines are there when asked for
    assert re.search(r"DEBUG httpcore", twice.stderr), twice.stderr


def _with_terminal_stderr(tmp_path: Path, *args: str) -> tuple[str, str]:
    """Run the command line with stderr on a pseudo-terminal and stdout in a pipe."""
    import os
    import pty
    import subprocess
    import sys

    env = {**os.environ, "CHAINWATCH_CACHE_DIR": str(tmp_path / "cache"),
           "CHAINWATCH_DATA_DIR": str(tmp_path / "data"), "COLUMNS": "100"}
    env.pop("NO_COLOR", None)
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen([sys.executable, "-m", "chainwatch", *args], cwd=tmp_path,
                                env=env, stdout=subprocess.PIPE, stderr=slave, text=True)
        os.close(slave)
        stdout, _ = proc.communicate(timeout=120)
        chunks = []
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the terminal's other side is closed
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(master)
    return stdout, b"".join(chunks).decode("utf-8", "replace")


def test_cli_spinner_on_a_terminal_only_and_never_in_the_output(tmp_path: Path) -> None:
    pkg = package(tmp_path)
    scan = ["scan", str(pkg), "--against", "none", "--offline", "--no-remember",
            "--fail-on", "never"]
    stdout, terminal = _with_terminal_stderr(tmp_path, *scan)
    assert f"scanning {pkg}" in ANSI.sub("", terminal)  # the spinner's line
    assert "scanning" not in stdout and "left-padder@1.0.0" in stdout
    _, quiet = _with_terminal_stderr(tmp_path, *scan, "-q")
    assert "scanning" not in quiet
    piped = run(tmp_path, *scan)  # stderr in a pipe: no spinner
    assert "scanning" not in piped.stderr


def test_exposure_and_inventory_tables_follow_colour_and_width() -> None:
    from chainwatch.exposure import Exposure, Hit
    from chainwatch.model import Advisory, Environment, InstalledPackage
    from chainwatch.output.inventory import exposure_table, inventory_table

    pkg = InstalledPackage(name=LONG, version="1.0.0", paths=(("app", LONG),))
    env = Environment(id="e", kind="npm", source="/srv/" + "d" * 100 + "/package-lock.json",
                      packages=(pkg,))
    exp = Exposure(env, (Hit(pkg, (Advisory(id="MAL-2099-1", package=LONG,
                                            versions=("1.0.0",)),)),))
    piped = exposure_table([exp], width=None, color=False)
    assert f"{LONG}@1.0.0" in piped and env.source in piped and not ANSI.search(piped)
    assert ANSI.search(exposure_table([exp], width=None, color=True))
    assert f"{LONG}@1.0.0" not in exposure_table([exp], width=60)
    assert env.source in inventory_table([env], width=None)


def test_a_finding_says_where_to_look_sandbox_for_what_the_release_did() -> None:
    def f(rule: str, file: str | None = None, line: int | None = None) -> Finding:
        return Finding(rule, Severity.HIGH, "t", "c", "m", file=file, line=line)

    assert f("CW-DYN-EXFIL").where == "sandbox"
    assert f("CW-META-NEW-MAINTAINER").where == "registry"
    assert f("CW-X", "lib/a.js", 3).where == "lib/a.js:3"
    assert f("CW-X", "package.json").where == "package.json"


def test_help_names_every_choice_of_the_options_that_show_a_word_instead(tmp_path: Path) -> None:
    """--format and --fail-on show FORMAT / LEVEL (a long choice list was cut mid-word in an
    80-column help): their help text must then name every choice."""
    from chainwatch.cli.incidents import ReportFormat
    from chainwatch.cli.scan import FailOn, Format
    from tests.cli_runner import chainwatch, clean_env

    env = clean_env(tmp_path, COLUMNS="200")
    scan_help = chainwatch("scan", "--help", env=env).stdout
    report_help = chainwatch("report", "--help", env=env).stdout
    for choice in [*Format, *FailOn]:
        assert re.search(rf"\b{choice.value}\b", scan_help), choice
    for choice in ReportFormat:
        assert re.search(rf"\b{choice.value}\b", report_help), choice
