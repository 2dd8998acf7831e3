"""Ctrl-C and SIGTERM: one line ("interrupted"), exit code 130, within ``GRACE`` seconds.

A command is interrupted in its main thread (``KeyboardInterrupt``), and ``finish`` then ends
the process at once with ``os._exit``: worker threads (a scan stuck in a pathological regex or
a huge file, an upstream fetch) are abandoned, never joined, so they cannot hold the process
open (Ctrl-C during a scan took 30-40 s: the pool waited for the scan to end). Services that
stop gracefully (``watch``, ``proxy``) call ``arm`` when their own handler sees the signal: if
they have not finished ``GRACE`` seconds later, a watchdog thread ends the process the same way.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from types import FrameType
from typing import NoReturn

#: Exit code of an interrupted command (128 + SIGINT, as shells report it).
EXIT_INTERRUPTED = 130
#: Seconds a graceful stop may take before the process is ended anyway.
GRACE = 1.5

_done = threading.Lock()
_armed = threading.Event()


def finish() -> NoReturn:
    """Say "interrupted" once and end the process now, whatever threads still run."""
    if _done.acquire(blocking=False):
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        with contextlib.suppress(OSError):
            os.write(2, b"interrupted\n")
        os._exit(EXIT_INTERRUPTED)
    while True:  # another thread is ending the process
        time.sleep(1)


def _watchdog(grace: float) -> None:
    time.sleep(grace)
    finish()


def arm(grace: float = GRACE) -> None:
    """Start the watchdog (once): the process ends ``grace`` seconds from now at the latest."""
    if not _armed.is_set():
        _armed.set()
        threading.Thread(target=_watchdog, args=(grace,), name="chainwatch-interrupt",
                         daemon=True).start()


def _raise(signum: int, frame: FrameType | None) -> None:
    arm()
    raise KeyboardInterrupt


def install() -> None:
    """SIGINT and SIGTERM raise ``KeyboardInterrupt`` in the main thread (and arm the watchdog,
    should unwinding block on something)."""
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, _raise)
