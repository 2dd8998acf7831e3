"""Run one phase's command inside the inner sandbox and wait, briefly, for what it left behind.

npm returns when a lifecycle script exits, but a process the script detached (``spawn(…,
{detached: true}).unref()``, ``cmd &``) lives on and does its work then. The inner sandbox
would kill it with its pid namespace as soon as the script exits, so this runs the command as
a child subreaper: orphaned descendants are re-parented here and waited for, up to LINGER
seconds after the command itself ended. Nothing here trusts the package; it only waits.

Usage: python3 -I -S linger.py SECONDS -- ARGV...
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import time

PR_SET_CHILD_SUBREAPER = 36


def main(argv: list[str]) -> int:
    linger = float(argv[1])
    command = argv[argv.index("--") + 1:]
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # without it, orphans go to the namespace's init and die with it: as before
    try:
        proc = subprocess.Popen(command, close_fds=False)
    except OSError as exc:
        print(f"cannot run {command[:1]}: {exc}", file=sys.stderr)
        return 127
    code = proc.wait()
    deadline = time.monotonic() + linger
    while time.monotonic() < deadline:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break  # nothing left
        if pid == 0:
            time.sleep(0.05)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv))
