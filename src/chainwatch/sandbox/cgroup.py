"""A control group for one sandbox run, when the host lets us make one (root, or a delegated
cgroup v2 subtree): bounds the tasks (processes and threads) and the memory of everything inside,
tmpfs pages included. RLIMIT_NPROC alone does not hold when chainwatch runs as root, because the
sandbox's user maps to the host's root, which the kernel exempts from that limit."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")


class Cgroup:
    def __init__(self, name: str, tasks: int, memory_bytes: int, root: Path = ROOT) -> None:
        self.dirs: list[Path] = []
        self.problems: list[str] = []
        v1_pids, v1_mem = root / "pids", root / "memory"
        if (v1_pids / "cgroup.procs").exists():
            self._make(v1_pids / name, {"pids.max": str(tasks)})
            if (v1_mem / "cgroup.procs").exists():
                self._make(v1_mem / name, {"memory.limit_in_bytes": str(memory_bytes),
                                           "memory.memsw.limit_in_bytes": str(memory_bytes)})
        elif (root / "cgroup.controllers").exists():
            self._make(root / name, {"pids.max": str(tasks), "memory.max": str(memory_bytes),
                                     "memory.swap.max": "0"})
        else:
            self.problems.append("no cgroup filesystem")

    def _make(self, path: Path, settings: dict[str, str]) -> None:
        try:
            path.mkdir()
        except OSError as exc:
            self.problems.append(f"cannot create {path}: {exc.strerror}")
            return
        self.dirs.append(path)
        for key, value in settings.items():
            try:
                (path / key).write_text(value)
            except OSError as exc:
                if "memsw" not in key and "swap" not in key:  # swap accounting is often off
                    self.problems.append(f"cannot set {key}: {exc.strerror}")

    @property
    def limits_tasks(self) -> bool:
        return any((d / "pids.max").exists() for d in self.dirs) and not any(
            "pids.max" in p for p in self.problems)

    def enter_command(self) -> list[str]:
        """A prefix that moves the command into the group before it runs anything."""
        if not self.dirs:
            return []
        procs = " ".join(f"{d}/cgroup.procs" for d in self.dirs)
        return ["/bin/sh", "-c", f'for f in {procs}; do echo $$ > "$f" || exit 97; done; exec "$@"',
                "chainwatch-cgroup"]

    def close(self) -> None:
        """Kill what is left inside and remove the group."""
        for d in self.dirs:
            for _ in range(50):
                try:
                    pids = [int(p) for p in (d / "cgroup.procs").read_text().split()]
                except OSError:
                    break
                if not pids:
                    break
                for pid in pids:
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(OSError):
                d.rmdir()
