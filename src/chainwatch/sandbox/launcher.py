"""Starting the sandbox: bubblewrap under strace, with limits, and nothing of the real host.

The outer bwrap gets new user, network, pid, ipc, uts and cgroup namespaces, a read-only /usr,
a fresh /etc of our own, tmpfs home and /tmp, and a cleared environment. strace runs outside it,
so its log is out of the package's reach. The host bounds the whole run in time and log size and
kills the process group when either is exceeded; the inner sandboxes die with the outer one.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chainwatch.sandbox.strace import TRACED

HERE = Path(__file__).resolve().parent
#: Where the sandbox's own files appear inside it. A package must see an ordinary machine running
#: ``npm install``: no path, mount point, variable or file name says what watches it. Our files
#: are copied per run into a neutrally named folder (a bind's source shows in mountinfo) and
#: appear under these names; the supervisor's config and logs are out of the package's view.
RUN_DIR = "/opt/build"
PY_DIR = "/opt/python/lib"
NODE_DIR = "/opt/nodejs/lib"
LOG_DIR = "/var/log/build"
#: the Node harness's settings (package folder, bait variable names, settle time), beside it
NODE_SETTINGS = "options.json"
SYSTEM_PYTHON = "/usr/bin/python3"
MAX_LOG_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class Limits:
    phase_seconds: int = 30
    memory_bytes: int = 512 * 1024 * 1024
    #: address space; V8 reserves far more than it uses, so this bound is looser than memory
    address_bytes: int = 4 * 1024 * 1024 * 1024
    processes: int = 64
    file_bytes: int = 64 * 1024 * 1024
    open_files: int = 512
    home_bytes: int = 256 * 1024 * 1024
    tmp_bytes: int = 128 * 1024 * 1024
    #: the whole sandbox (cgroup, when available): tasks incl. threads, and memory incl. tmpfs
    sandbox_tasks: int = 256
    sandbox_memory_bytes: int = 1024 * 1024 * 1024

    def as_dict(self) -> dict[str, int]:
        return {k: int(v) for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class Tools:
    bwrap: str | None = field(default_factory=lambda: shutil.which("bwrap"))
    strace: str | None = field(default_factory=lambda: shutil.which("strace"))
    node: str | None = field(default_factory=lambda: shutil.which("node"))
    prlimit: str | None = field(default_factory=lambda: shutil.which("prlimit"))
    python: str = SYSTEM_PYTHON

    def missing(self) -> str | None:
        """Why the sandbox cannot run here, or None."""
        for name in ("bwrap", "strace", "node", "prlimit"):
            if not getattr(self, name):
                hint = " (apt-get install bubblewrap strace)" if name in ("bwrap", "strace") else ""
                return f"{name} is not installed{hint}"
        if not os.access(self.python, os.X_OK):
            return f"no system Python at {self.python} to run the sandbox supervisor"
        if self.prlimit and not self.prlimit.startswith("/usr/"):
            return f"prlimit at {self.prlimit} is outside /usr, which the sandbox binds"
        return None


@dataclass
class RawRun:
    log: Path
    returncode: int | None
    seconds: float
    killed: str = ""
    stderr: str = ""


def system_layout() -> tuple[list[str], list[tuple[str, str]]]:
    """Read-only binds and symlinks that give the sandbox the host's programs and libraries."""
    binds, links = ["/usr"], []
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):
            links.append((top, os.readlink(top)))
        elif os.path.isdir(top):
            binds.append(top)
    return binds, links


def node_dirs(node: str) -> list[str]:
    """A node installed outside /usr (nvm, a tarball) is bound read-only from its own prefix."""
    real = os.path.realpath(node)
    if real.startswith("/usr/"):
        return []
    return [str(Path(real).parent.parent)]


ETC_FILES = {
    "passwd": "root:x:0:0:root:/root:/bin/sh\nnode:x:1000:1000:node:/home/node:/bin/sh\n",
    "group": "root:x:0:\nnode:x:1000:\n",
    "hosts": "127.0.0.1 localhost\n::1 localhost\n",
    "resolv.conf": "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n",
    "nsswitch.conf": "passwd: files\ngroup: files\nhosts: files dns\n",
    "hostname": "build-host\n",
}
ETC_SHARED = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "ssl", "ca-certificates",
              "alternatives", "localtime")


def outer_argv(tools: Tools, work: Path, log: Path, limits: Limits,
               extra_binds: list[str], hostname: str = "build-host") -> list[str]:
    assert tools.bwrap and tools.strace
    binds, links = system_layout()
    argv = [tools.strace, "-f", "-qq", "--pidns-translation", "--seccomp-bpf", "-s", "4096",
            "-e", f"trace={TRACED}", "-e", "signal=none", "-o", str(log),
            tools.bwrap, "--unshare-all", "--die-with-parent", "--new-session",
            "--uid", "0", "--gid", "0", "--cap-add", "CAP_NET_BIND_SERVICE",
            "--hostname", hostname]
    for b in binds + extra_binds:
        argv += ["--ro-bind", b, b]
    for link, target in links:
        argv += ["--symlink", target, link]
    argv += ["--tmpfs", "/etc"]
    for name in ETC_SHARED:
        argv += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    for name in ETC_FILES:
        argv += ["--ro-bind", str(work / "etc" / name), f"/etc/{name}"]
    argv += ["--proc", "/proc", "--dev", "/dev",
             "--size", str(limits.home_bytes), "--tmpfs", "/home/node",
             "--size", str(limits.tmp_bytes), "--tmpfs", "/tmp",
             "--tmpfs", LOG_DIR,
             "--ro-bind", str(work / "run"), RUN_DIR,
             "--ro-bind", str(work / "python"), PY_DIR,
             "--ro-bind", str(work / "node"), NODE_DIR,
             "--clearenv", "--setenv", "PATH", "/usr/bin:/bin", "--chdir", "/",
             tools.python, "-I", "-S", "-B", f"{PY_DIR}/supervisor.py", f"{RUN_DIR}/config.json"]
    return argv


def prepare(work: Path, config: dict[str, Any], files: dict[str, tuple[bytes, int]],
            node_settings: dict[str, Any] | None = None) -> None:
    """Write the supervisor's config, our /etc, the package's files (as data), and copies of
    the supervisor and the Node harness (with its settings) to work."""
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", "__init__.py")
    shutil.copytree(HERE / "inside", work / "python", ignore=skip)
    shutil.copytree(HERE / "js", work / "node", ignore=skip)
    (work / "node" / NODE_SETTINGS).write_text(json.dumps(node_settings or {}), encoding="utf-8")
    (work / "etc").mkdir(parents=True)
    for name, text in ETC_FILES.items():
        if name == "hostname":
            text = f"{config.get('hostname', 'build-host')}\n"
        (work / "etc" / name).write_text(text, encoding="utf-8")
    stage = work / "run" / "stage"
    stage.mkdir(parents=True)
    root = stage.resolve()
    for rel, (data, mode) in files.items():
        target = (stage / rel).resolve()
        if root not in target.parents:
            continue  # the archive reader already refuses these; never write outside
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        target.chmod(0o755 if mode & 0o111 else 0o644)
    (work / "run" / "config.json").write_text(json.dumps(config), encoding="utf-8")


def sink_certificate(run_dir: Path) -> bool:
    """A throw-away self-signed certificate for the sink's TLS (run_dir/sink.crt, sink.key),
    made with the host's openssl; False (the sink then records TLS names only) without it."""
    openssl = shutil.which("openssl")
    if openssl is None:
        return False
    try:
        done = subprocess.run(
            [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-days", "2", "-subj", "/CN=sink.invalid", "-keyout",
             str(run_dir / "sink.key"), "-out", str(run_dir / "sink.crt")],
            stdin=subprocess.DEVNULL, capture_output=True, timeout=20, check=False,
            env={"PATH": "/usr/bin:/bin", "LANG": "C"})
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0 and (run_dir / "sink.key").is_file()


def launch(argv: list[str], log: Path, deadline_s: float) -> RawRun:
    """Run the sandbox; kill everything when the deadline or the log bound is passed."""
    started = time.monotonic()
    killed = ""
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, start_new_session=True,
                                env={"PATH": "/usr/bin:/bin", "LANG": "C"})
    except OSError as exc:
        return RawRun(log, None, 0.0, stderr=f"cannot start {argv[0]}: {exc}")
    try:
        while proc.poll() is None:
            elapsed = time.monotonic() - started
            if elapsed > deadline_s:
                killed = f"took longer than {deadline_s:.0f} s in all"
            elif log.exists() and log.stat().st_size > MAX_LOG_BYTES:
                killed = f"trace passed {MAX_LOG_BYTES // (1024 * 1024)} MB"
            if killed:
                os.killpg(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.05)
        proc.wait()
        stderr = proc.stderr.read(8192).decode("utf-8", "replace") if proc.stderr else ""
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if proc.stderr:
            proc.stderr.close()
    return RawRun(log, proc.returncode, time.monotonic() - started, killed, stderr)
