"""Run the chainwatch command line the way a user does, for tests.

By default the command runs in this process through ``chainwatch.cli.main`` (the console
script's own entry point) with its own argv, environment, working folder and standard streams:
the same code decides the output and the exit code, without paying a Python start per call.
``real=True`` (or ``CHAINWATCH_TEST_SUBPROCESS=1`` for a whole run) starts a real process
instead: use it where only a process shows the behaviour (signals, memory of the run, servers,
what the interpreter prints on exit).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """This process's environment with chainwatch's caches and data under ``home`` and none of
    the settings a developer's shell may carry (database, sinks, debug)."""
    env = {**os.environ, "CHAINWATCH_CACHE_DIR": str(home / "cache"),
           "CHAINWATCH_DATA_DIR": str(home / "data"), "NO_COLOR": "1"}
    for name in ("CHAINWATCH_DEBUG", "CHAINWATCH_DB", "CHAINWATCH_WEBHOOK", "CHAINWATCH_SLACK",
                 "CHAINWATCH_SMTP"):
        env.pop(name, None)
    env.update(extra)
    return env


def chainwatch(*args: str, env: Mapping[str, str], cwd: Path | None = None,
               stdin: str = "", timeout: float = 120,
               real: bool = False) -> subprocess.CompletedProcess[str]:
    """``chainwatch ARGS`` with exactly ``env`` as its environment; stdout, stderr and the exit
    code as :func:`subprocess.run` gives them."""
    if real or os.environ.get("CHAINWATCH_TEST_SUBPROCESS") == "1":
        return subprocess.run([sys.executable, "-m", "chainwatch", *args], capture_output=True,
                              text=True, env=dict(env), timeout=timeout, check=False, cwd=cwd,
                              input=stdin)
    out, err = io.StringIO(), io.StringIO()
    with _process_state(["chainwatch", *args], env, cwd, stdin, out, err):
        code = _run_main()
    return subprocess.CompletedProcess(["chainwatch", *args], code, out.getvalue(),
                                       err.getvalue())


def _run_main() -> int:
    from chainwatch.cli import main

    try:
        main()
    except SystemExit as exc:
        if exc.code is None:
            return 0
        if isinstance(exc.code, int):
            return exc.code
        print(exc.code, file=sys.stderr)
        return 1
    return 0


@contextlib.contextmanager
def _process_state(argv: list[str], env: Mapping[str, str], cwd: Path | None, stdin: str,
                   out: io.StringIO, err: io.StringIO) -> Iterator[None]:
    """What a new process would have of its own, swapped in and restored afterwards."""
    saved_env = dict(os.environ)
    saved_argv, saved_cwd = sys.argv, os.getcwd()
    saved_streams = sys.stdin, sys.stdout, sys.stderr
    root = logging.getLogger()
    saved_root = root.handlers[:], root.level
    ours = logging.getLogger("chainwatch")
    saved_ours = ours.level
    saved_signals = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    os.environ.clear()
    os.environ.update(env)
    sys.argv = argv
    sys.stdin, sys.stdout, sys.stderr = io.StringIO(stdin), out, err
    if cwd is not None:
        os.chdir(cwd)
    try:
        yield
    finally:
        os.chdir(saved_cwd)
        sys.stdin, sys.stdout, sys.stderr = saved_streams
        sys.argv = saved_argv
        os.environ.clear()
        os.environ.update(saved_env)
        root.handlers[:] = saved_root[0]
        root.setLevel(saved_root[1])
        ours.setLevel(saved_ours)
        for sig, handler in saved_signals.items():
            signal.signal(sig, handler)
