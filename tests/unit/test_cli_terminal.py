"""On a terminal the CLI draws spinners, bars and status lines on stderr (rich live displays,
which hold the stderr console in a with-block): they must work with the console made on first
use. Each run is a new process whose stdout and stderr are a pseudo-terminal."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

from tests.cli_runner import clean_env
from tests.helpers import make_tgz, manifest


def on_terminal(tmp_path: Path, *args: str) -> tuple[int, str]:
    """Exit code and everything written to the terminal by ``chainwatch ARGS``."""
    env = clean_env(tmp_path, TERM="xterm", COLUMNS="100")
    env.pop("NO_COLOR", None)
    main, child = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "chainwatch", *args], stdin=subprocess.DEVNULL,
                            stdout=child, stderr=child, env=env, cwd=tmp_path)
    os.close(child)
    out = bytearray()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([main], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(main, 65536)
            except OSError:  # the child closed its side
                break
            if not chunk:
                break
            out += chunk
        elif proc.poll() is not None:
            break
    os.close(main)
    return proc.wait(timeout=30), out.decode("utf-8", "replace")


def test_scan_progress_on_a_terminal(tmp_path: Path) -> None:
    tgz = tmp_path / "cw-tty-probe-1.0.0.tgz"
    tgz.write_bytes(make_tgz({"package.json": manifest("cw-tty-probe", "1.0.0"),
                              "index.js": "module.exports = 1;\n"}))
    for targets in ([str(tgz)], [str(tgz), str(tgz)]):  # a spinner for one, a bar for several
        code, shown = on_terminal(tmp_path, "scan", *targets, "--against", "none", "--offline")
        assert code == 0, shown
        assert "internal error" not in shown and "BENIGN" in shown


def test_inventory_status_line_on_a_terminal(tmp_path: Path) -> None:
    (tmp_path / "package.json").write_text(manifest("cw-tty-app", "1.0.0"))
    code, shown = on_terminal(tmp_path, "inventory", str(tmp_path))
    assert code == 0, shown
    assert "internal error" not in shown and "package.json" in shown
