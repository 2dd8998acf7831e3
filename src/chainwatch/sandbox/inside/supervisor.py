"""The supervisor, run by the system Python inside the outer sandbox (own user, network, pid,
ipc and uts namespaces; only loopback). It lays out the bait home and the package, starts the
sink, then runs each phase in an inner sandbox: a further user and pid namespace with no
capabilities, a cleared environment, and prlimit bounds. It reports through the channel only.

Usage: python3 -I supervisor.py CONFIG.json
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
LINGER = os.path.join(HERE, "linger.py")

if TYPE_CHECKING:
    from chainwatch.sandbox.inside.channel import send
    from chainwatch.sandbox.inside.sink import Sink
else:  # run by the system Python inside the sandbox, where chainwatch is not installed
    from channel import send
    from sink import Sink


def _write(path: Path, text: str, mode: int = 0o600) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)


def _stage(stage: Path, target: Path) -> None:
    """Copy the package's files (written by chainwatch, regular files only) into the tmpfs."""
    for src in sorted(stage.rglob("*")):
        if src.is_symlink() or not src.is_file():
            continue
        dst = target / src.relative_to(stage)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
        dst.chmod(0o755 if src.stat().st_mode & 0o111 else 0o644)


def _inner(cfg: dict[str, Any], phase: dict[str, Any]) -> list[str]:
    lim = cfg["limits"]
    argv = ["/usr/bin/bwrap", "--unshare-user", "--unshare-pid", "--unshare-ipc",
            "--unshare-uts", "--unshare-cgroup-try", "--die-with-parent", "--new-session",
            "--uid", "1000", "--gid", "1000", "--cap-drop", "ALL",
            "--hostname", cfg.get("hostname", "build-host")]
    for path in cfg["ro_binds"]:
        argv += ["--ro-bind", path, path]
    for link, target in cfg["symlinks"]:
        argv += ["--symlink", target, link]
    argv += ["--ro-bind", "/etc", "/etc", "--ro-bind", "/proc", "/proc", "--dev", "/dev",
             "--bind", cfg["home"], cfg["home"], "--bind", "/tmp", "/tmp",
             "--ro-bind", cfg["js_dir"], cfg["js_dir"],
             # the phase runner only: the supervisor's own files stay out of the package's view
             "--ro-bind", LINGER, LINGER, "--clearenv"]
    for key, value in phase["env"].items():
        argv += ["--setenv", key, value]
    argv += ["--chdir", phase["cwd"], "/usr/bin/prlimit",
             f"--nproc={lim['processes']}", f"--data={lim['memory_bytes']}",
             f"--as={lim['address_bytes']}", f"--fsize={lim['file_bytes']}",
             f"--nofile={lim['open_files']}", "--core=0", f"--cpu={lim['phase_seconds']}", "--",
             sys.executable, "-I", "-S", "-B", LINGER,
             str(cfg.get("linger_seconds", 4)), "--"]
    return argv + list(phase["argv"])


def main(config_path: str) -> int:
    cfg = json.loads(Path(config_path).read_text(encoding="utf-8"))
    token = cfg["token"]
    mark = f"/.cw-mark/{token}"

    def report(record: dict[str, Any]) -> None:
        send(f"/.cw-sink/{token}", record)

    home = Path(cfg["home"])
    for rel, text in cfg["bait_files"].items():
        _write(home / rel, text)
    for rel, text in cfg["project_files"].items():
        _write(home / rel, text, 0o644)
    _stage(Path(cfg["stage"]), Path(cfg["package_dir"]))
    tls = cfg.get("tls")
    problems = Sink(report, cfg["baits"], (tls["cert"], tls["key"]) if tls else None).start()
    send(f"{mark}/ready", {"problems": problems})
    for phase in cfg["phases"]:
        send(f"{mark}/phase", {"name": phase["name"]})
        started = time.monotonic()
        timed_out = False
        with open(os.devnull, "rb") as devnull, \
                open(os.path.join(cfg.get("log_dir", "/var/log"), f"{phase['name']}.log"),
                     "wb") as log:
            proc = subprocess.Popen(_inner(cfg, phase), stdin=devnull, stdout=log,
                                    stderr=subprocess.STDOUT, close_fds=True)
            try:
                code = proc.wait(timeout=cfg["limits"]["phase_seconds"])
            except subprocess.TimeoutExpired:
                timed_out = True
                proc.kill()  # the inner sandbox's init dies with it, and all it started
                code = proc.wait()
        send(f"{mark}/end", {"name": phase["name"], "code": code, "timed_out": timed_out,
                             "seconds": round(time.monotonic() - started, 3)})
    time.sleep(0.05)  # let the sink report the last connection
    send(f"{mark}/done", {})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
