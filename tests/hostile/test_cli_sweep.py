"""Every subcommand x bad input: exit 2, exactly one `error:` line, never a traceback
(issue 12 E). Runs the real console entry point in a subprocess; nothing touches the network
(`watch` polls a closed loopback port)."""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.cli_runner import chainwatch, clean_env

CLOSED = "http://127.0.0.1:9/"  # the discard port: connection refused, offline


def run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # servers run as real processes: they bind ports and install signal handlers
    return chainwatch(*args, env=clean_env(tmp_path, npm_config_registry=CLOSED), cwd=tmp_path,
                      real=bool(args) and args[0] in ("watch", "proxy", "serve"))


def assert_one_error(done: subprocess.CompletedProcess[str], mentions: str = "") -> None:
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, done.stderr
    assert not any(ch in done.stderr for ch in "╭╰│"), done.stderr  # no framed usage panel
    assert done.returncode == 2, (done.returncode, done.stderr)
    if mentions:
        assert mentions in errors[0], errors[0]


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    binary = tmp_path / "binary.dat"
    binary.write_bytes(b"\xd3\x00\xff\xfe" + bytes(range(256)) * 16)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database " * 200)
    project = tmp_path / "project"
    project.mkdir()
    (project / "package-lock.json").write_text(json.dumps({
        "name": "p", "version": "1.0.0", "lockfileVersion": 3,
        "packages": {"": {"name": "p", "version": "1.0.0", "dependencies": {"left-pad": "1.3.0"}},
                     "node_modules/left-pad": {"version": "1.3.0"}}}))
    osv = tmp_path / "osv.json"
    osv.write_text("[]")
    packages = tmp_path / "packages.txt"
    packages.write_text("left-pad\n")
    return {"binary": str(binary), "junk": str(junk), "project": str(project), "osv": str(osv),
            "packages": str(packages), "tmp": str(tmp_path)}


BAD_DBS: dict[str, Callable[[dict[str, str]], str]] = {
    "not-a-url": lambda f: "notaurl",
    "no-driver": lambda f: "mysql://u@127.0.0.1/x",
    "missing-folder": lambda f: f"sqlite:///{f['tmp']}/nonexistent/x/y.db",
    "not-a-database": lambda f: f"sqlite:///{f['junk']}",
}
DB_COMMANDS: dict[str, Callable[[dict[str, str]], list[str]]] = {
    "db stats": lambda f: ["db", "stats"],
    "db import": lambda f: ["db", "import", f["osv"]],
    "incidents": lambda f: ["incidents"],
    "inventory --record": lambda f: ["inventory", f["project"], "--record", "repo@abc"],
    "exposure --query": lambda f: ["exposure", "--query", "left-pad@1.3.0"],
    "db verdicts list": lambda f: ["db", "verdicts", "list"],
    "report": lambda f: ["report"],
}


@pytest.mark.parametrize("db", list(BAD_DBS))
@pytest.mark.parametrize("command", list(DB_COMMANDS))
def test_bad_database_on_every_database_command(tmp_path: Path, files: dict[str, str], db: str,
                                                command: str) -> None:
    assert_one_error(run(tmp_path, *DB_COMMANDS[command](files), "--db", BAD_DBS[db](files)))


BINARY_INPUTS: dict[str, Callable[[dict[str, str]], list[str]]] = {
    "policy show --policy": lambda f: ["policy", "show", "--policy", f["binary"]],
    "check --policy": lambda f: ["check", f["project"], "--offline", "--policy", f["binary"]],
    "proxy --policy": lambda f: ["proxy", "--no-scan", "--listen", "127.0.0.1:1",
                                 "--policy", f["binary"]],
    "report FILE": lambda f: ["report", f["binary"]],
    "watch --packages": lambda f: ["watch", "--once", "--registry", CLOSED,
                                   "--packages", f["binary"]],
    "scan --packument": lambda f: ["scan", "left-pad@1.3.0", "--offline",
                                   "--packument", f["binary"]],
    "rules test FILE": lambda f: ["rules", "test", f["binary"]],
    "rules list --rules FILE": lambda f: ["rules", "list", "--rules", f["binary"]],
}


@pytest.mark.parametrize("case", list(BINARY_INPUTS))
def test_a_binary_file_as_input_names_the_file(tmp_path: Path, files: dict[str, str],
                                               case: str) -> None:
    done = run(tmp_path, *BINARY_INPUTS[case](files))
    assert_one_error(done, "binary.dat")


USAGE: dict[str, tuple[Callable[[dict[str, str]], list[str]], str]] = {
    "report -o into a missing folder": (
        lambda f: ["report", "-o", f"{f['tmp']}/missing/brief.md"], "missing"),
    "report -o a folder": (lambda f: ["report", "-f", "json", "-o", f["tmp"]], "folder"),
    "proxy --listen port 99999": (lambda f: ["proxy", "--no-scan", "--listen", "127.0.0.1:99999"],
                                  "--listen"),
    "proxy --listen port 0": (lambda f: ["proxy", "--no-scan", "--listen", "127.0.0.1:0"],
                              "--listen"),
    "proxy --listen unknown host": (
        lambda f: ["proxy", "--no-scan", "--listen", "host.invalid:4873",
                   "--public-url", "http://gate.invalid/"], "--listen"),
    "watch --top -5": (lambda f: ["watch", "--once", "--registry", CLOSED, "--top", "-5"],
                       "--top"),
    "watch --webhook not-a-url": (
        lambda f: ["watch", "--once", "--registry", CLOSED, "--packages", f["packages"],
                   "--webhook", "not-a-url"], "--webhook"),
    "watch --slack ftp": (
        lambda f: ["watch", "--once", "--registry", CLOSED, "--packages", f["packages"],
                   "--slack", "ftp://hooks.invalid/x"], "--slack"),
    "watch --smtp not-a-url": (
        lambda f: ["watch", "--once", "--registry", CLOSED, "--packages", f["packages"],
                   "--smtp", "not-a-url"], "--smtp"),
    "watch --metrics-port 70000": (
        lambda f: ["watch", "--once", "--registry", CLOSED, "--packages", f["packages"],
                   "--metrics-port", "70000"], "--metrics-port"),
    "exposure PATH --query": (
        lambda f: ["exposure", f["project"], "--query", "left-pad@1.3.0"], "--query"),
    "watch --once --status": (lambda f: ["watch", "--once", "--status"], "--status"),
    "scan --jobs 0": (lambda f: ["scan", "left-pad@1.3.0", "--offline", "--jobs", "0"], "--jobs"),
    "scan --format xml": (lambda f: ["scan", "left-pad@1.3.0", "--format", "xml"], "--format"),
    "unknown option": (lambda f: ["inventory", f["project"], "--nope"], "--nope"),
    "unknown command": (lambda f: ["nosuchcommand"], "nosuchcommand"),
    "missing argument": (lambda f: ["scan"], "scan --help"),
    "db verdicts remove blank reason": (
        lambda f: ["db", "verdicts", "remove", "x@1.0.0", "--reason", " "], "--reason"),
    "inventory missing path": (lambda f: ["inventory", f"{f['tmp']}/nothing-here"], ""),
}


@pytest.mark.parametrize("case", list(USAGE))
def test_bad_usage_is_one_line_and_exit_2(tmp_path: Path, files: dict[str, str],
                                          case: str) -> None:
    make, mentions = USAGE[case]
    assert_one_error(run(tmp_path, *make(files)), mentions)


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_a_busy_metrics_port(tmp_path: Path, files: dict[str, str], busy_port: int) -> None:
    done = run(tmp_path, "watch", "--once", "--registry", CLOSED, "--packages", files["packages"],
               "--metrics-port", str(busy_port))
    assert_one_error(done, "--metrics-port")


def test_a_busy_proxy_port(tmp_path: Path, busy_port: int) -> None:
    done = run(tmp_path, "proxy", "--no-scan", "--listen", f"127.0.0.1:{busy_port}")
    assert_one_error(done, "--listen")
