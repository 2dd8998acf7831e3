"""Reading the strace log of one sandbox run into events, phase by phase.

The log is written by strace running OUTSIDE the sandbox, so package code cannot edit it. Each
process belongs to the phase during which the supervisor started it (children inherit). Trusted
markers (phase boundaries, sink records) carry the run's secret token; records from the Node
preload carry none and are attributed to the process that made them, like any syscall.
"""

from __future__ import annotations

import base64
import binascii
import json
import posixpath
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from chainwatch.sandbox.inside.sink import bait_hits, dns_name

MAX_EVENTS = 500
MAX_HELD_CALLS = 2000
MAX_HELD_PROCESSES = 4096
MAX_DETAIL = 300
TRACED = ("execve,execveat,openat,open,creat,connect,sendto,mkdir,mkdirat,rename,renameat,"
          "renameat2,unlink,unlinkat,symlink,symlinkat,link,linkat,chdir,clone,clone3,fork,vfork,"
          "statfs")

_LINE = re.compile(r"^(\d+)\s+(?:<\.\.\. (\w+) resumed>|(\w+)\()(.*)$")
_RESULT = re.compile(r"\)\s+=\s+(-?\d+|\?)(?:\s+(E[A-Z0-9]+))?(?:\s+/\* (\d+) in strace's PID NS \*/)?")
_STR = re.compile(r'"((?:[^"\\]|\\.)*)"(\.\.\.)?')
_PORT = re.compile(r"sin6?_port=htons\((\d+)\)")
_ADDR4 = re.compile(r'sin_addr=inet_addr\("([^"]+)"\)')
_ADDR6 = re.compile(r'inet_pton\(AF_INET6, "([^"]+)"')
_ESC = re.compile(r"\\(x[0-9a-fA-F]{2}|[0-7]{1,3}|.)")
_SIMPLE = {"n": "\n", "t": "\t", "r": "\r", "v": "\v", "f": "\f", '"': '"', "\\": "\\"}
LOOPBACK = ("127.", "::1", "::ffff:127.")
SHELLS = {"sh", "bash", "dash", "zsh", "ksh", "fish", "csh", "tcsh", "busybox", "pwsh", "powershell",
          "cmd", "cmd.exe"}
#: programs that fetch, tunnel or persist, whoever starts them
DOWNLOADERS = {"curl", "wget", "nc", "ncat", "netcat", "socat", "ssh", "scp", "bun", "deno",
               "crontab", "systemctl", "at"}
#: interpreters, suspicious when package JavaScript starts them
INTERPRETERS = {"python", "python3", "perl", "ruby", "php", "osascript"}


def unescape(text: str) -> str:
    def one(m: re.Match[str]) -> str:
        e = m.group(1)
        if e[0] == "x":
            return chr(int(e[1:], 16))
        if e[0].isdigit():
            return chr(int(e, 8))
        return _SIMPLE.get(e, e)
    return _ESC.sub(one, text)


@dataclass(frozen=True)
class Event:
    kind: str
    detail: str
    phase: str
    #: for exec: the image of the process that made the call (node, sh, …)
    by: str = ""
    #: for file/write: the absolute path; for exec: the new image's base name
    target: str = ""
    #: bait names seen (exfiltration), set by sink records
    bait: tuple[str, ...] = ()


@dataclass
class Run:
    """What one sandbox run did, as read from its log."""

    events: list[Event] = field(default_factory=list)
    phases: list[dict[str, Any]] = field(default_factory=list)
    ready: bool = False
    done: bool = False
    problems: list[str] = field(default_factory=list)
    dropped: int = 0


def _decode_marker(path: str, prefix: str) -> dict[str, Any] | None:
    data = path[len(prefix):].replace("/", "")
    try:
        doc = json.loads(base64.urlsafe_b64decode(data + "=" * (-len(data) % 4)))
    except (ValueError, binascii.Error):
        return None
    return doc if isinstance(doc, dict) else None


class Parser:
    def __init__(self, token: str, home: str, package_dir: str, bait_paths: Iterable[str],
                 baits: dict[str, str]) -> None:
        self.token = token
        self.home = home
        self.package_dir = package_dir.rstrip("/")
        self.bait_paths = set(bait_paths)
        self.baits = baits
        self.run = Run()
        self.phase_of: dict[int, str] = {}
        self.image: dict[int, str] = {}
        self.cwd: dict[int, str] = {}
        self.supervisor: int | None = None
        self.current: str | None = None
        self.launcher_done: dict[str, bool] = {}
        self.pending: dict[int, str] = {}
        self.seen: set[tuple[str, str, str]] = set()
        #: calls of processes not yet known to a phase: a child often runs before strace
        #: reports the parent's clone() as finished
        self.unplaced: dict[int, list[tuple[str, str]]] = {}
        #: processes running the npm CLI itself (reading ~/.npmrc is its job)
        self.npm: set[int] = set()
        #: the phase's waiter (inside/linger.py), and its child about to exec the phase command
        self.lingerers: set[int] = set()
        self.launching: set[int] = set()

    # -- plumbing ----------------------------------------------------------------------------
    def feed(self, lines: Iterable[str]) -> Run:
        for raw in lines:
            line = raw.rstrip("\n")
            m = _LINE.match(line)
            if not m:
                continue
            pid = int(m.group(1))
            if line.endswith("<unfinished ...>"):
                self.pending[pid] = line[: -len("<unfinished ...>")]
                continue
            if m.group(2):  # resumed
                head = self.pending.pop(pid, None)
                if head is None:
                    continue
                line = head + m.group(4)
                m = _LINE.match(line)
                if not m:
                    continue
            self._call(pid, m.group(3), m.group(4))
        return self.run

    def _emit(self, kind: str, detail: str, phase: str, by: str = "", target: str = "",
              bait: tuple[str, ...] = ()) -> None:
        detail = detail[:MAX_DETAIL]
        key = (kind, detail, phase)
        if key in self.seen:
            return
        if len(self.run.events) >= MAX_EVENTS:
            self.run.dropped += 1
            return
        self.seen.add(key)
        self.run.events.append(Event(kind, detail, phase, by, target, bait))

    def _abs(self, pid: int, path: str) -> str:
        if not path.startswith("/"):
            path = posixpath.join(self.cwd.get(pid, self.package_dir), path)
        return posixpath.normpath(path)

    # -- one syscall ---------------------------------------------------------------------------
    def _call(self, pid: int, name: str, rest: str) -> None:
        res = _RESULT.search(rest)
        ret = res.group(1) if res else "?"
        err = res.group(2) if res and res.group(2) else ""
        ok = ret not in ("?",) and not ret.startswith("-")
        strings = [unescape(s.group(1)) for s in _STR.finditer(rest.split(") = ")[0])]
        trusted = bool(strings) and strings[0].startswith(
            (f"/.cw-mark/{self.token}/", f"/.cw-sink/{self.token}"))
        if pid not in self.phase_of and pid != self.supervisor and not trusted:
            self._hold(pid, name, rest)
            return
        if name == "statfs" and strings:
            self._marker(pid, strings[0])
            return
        if name in ("clone", "clone3", "fork", "vfork"):
            if err == "EAGAIN" and pid in self.phase_of:
                self._emit("limit", "process limit reached (fork refused)", self.phase_of[pid])
            if ok:
                child = int(res.group(3)) if res and res.group(3) else int(ret)
                self._fork(pid, child, "CLONE_THREAD" in rest)
            return
        phase = self.phase_of.get(pid)
        if phase is None:
            return
        if name == "chdir" and ok and strings:
            self.cwd[pid] = self._abs(pid, strings[0])
            return
        if name in ("execve", "execveat"):
            self._exec(pid, phase, strings, ok, err, rest)
            return
        image = posixpath.basename(self.image.get(pid, ""))
        if image in ("bwrap", "prlimit"):
            return  # the launcher setting up the inner sandbox
        if name in ("openat", "open", "creat") and strings:
            self._open(pid, phase, name, strings[0], rest, err)
        elif name in ("mkdir", "mkdirat", "unlink", "unlinkat") and strings:
            self._write(pid, phase, f"{name} {self._abs(pid, strings[0])}", strings[0], err)
        elif name in ("rename", "renameat", "renameat2", "symlink", "symlinkat", "link",
                      "linkat") and len(strings) >= 2:
            self._write(pid, phase, f"{name} {strings[0]} -> {self._abs(pid, strings[-1])}",
                        strings[-1], err)
        elif name in ("connect", "sendto"):
            self._net(pid, phase, name, rest, strings, err)

    def _marker(self, pid: int, path: str) -> None:
        mark = f"/.cw-mark/{self.token}/"
        sink = f"/.cw-sink/{self.token}"
        if path.startswith(mark):
            kind, _, _ = path[len(mark):].partition("/")
            doc = _decode_marker(path, f"{mark}{kind}") or {}
            if kind == "ready" and self.supervisor is None:  # once: the first is the supervisor
                self.run.ready = True
                self.supervisor = pid
                self.run.problems.extend(str(p) for p in doc.get("problems") or ())
            elif kind == "phase" and pid == self.supervisor:
                self.current = str(doc.get("name") or "?")[:40]
                self.launcher_done[self.current] = False
            elif kind == "end" and pid == self.supervisor:
                self.run.phases.append(doc)
                self.current = None
            elif kind == "done" and pid == self.supervisor:
                self.run.done = True
            return
        if path.startswith(sink):
            doc = _decode_marker(path, sink) or {}
            self._sink(doc)
            return
        if path.startswith("/.cw-ev/"):
            phase = self.phase_of.get(pid)
            doc = _decode_marker(path, "/.cw-ev") or {}
            kind = str(doc.get("kind") or "")
            if phase is not None and kind in ("file", "write", "net", "dns", "exec", "hook", "env",
                                              "eval"):
                detail = str(doc.get("detail") or "")
                hits = tuple(bait_hits(detail.encode(), self.baits)) if kind in ("net", "dns") else ()
                self._emit(kind, "node: " + detail, phase, "node", bait=hits)

    def _sink(self, doc: dict[str, Any]) -> None:
        phase = self.current or "between phases"
        bait = tuple(str(b) for b in doc.get("bait") or ())
        if doc.get("kind") == "dns":
            self._emit("dns", f"query {doc.get('name', '')}", phase, bait=bait)
        elif doc.get("kind") == "connect":
            if "tls_sni" in doc and "request" in doc:
                detail = (f"HTTPS {doc.get('request', '')} host {doc.get('host', '')} "
                          f"(TLS name {doc.get('tls_sni') or '(none)'}, {doc.get('bytes', 0)} bytes)")
            elif "tls_sni" in doc:
                detail = f"TLS to {doc.get('tls_sni') or '(no name)'} port {doc.get('port')}"
            else:
                detail = (f"HTTP {doc.get('request', '')} host {doc.get('host', '')} "
                          f"({doc.get('bytes', 0)} bytes)")
            self._emit("net", detail, phase, bait=bait)

    def _hold(self, pid: int, name: str, rest: str) -> None:
        held = self.unplaced.setdefault(pid, [])
        if len(held) < MAX_HELD_CALLS and len(self.unplaced) < MAX_HELD_PROCESSES:
            held.append((name, rest))

    def _fork(self, parent: int, child: int, thread: bool) -> None:
        if parent in self.phase_of:
            self.phase_of[child] = self.phase_of[parent]
        elif parent == self.supervisor and self.current is not None and not thread:
            self.phase_of[child] = self.current
        else:
            self.unplaced.pop(child, None)
            return
        self.image[child] = self.image.get(parent, "")
        if parent in self.lingerers and not thread:
            self.launching.add(child)
        if thread and parent in self.npm:
            self.npm.add(child)
        if parent in self.cwd:
            self.cwd[child] = self.cwd[parent]
        for name, rest in self.unplaced.pop(child, []):
            self._call(child, name, rest)

    def _exec(self, pid: int, phase: str, strings: list[str], ok: bool, err: str,
              rest: str) -> None:
        if not strings:
            return
        path = strings[0]
        base = posixpath.basename(path)
        by = posixpath.basename(self.image.get(pid, ""))
        if ok:
            self.image[pid] = path
            if base == "npm" or any(a.endswith(("/bin/npm", "npm-cli.js")) for a in strings[1:3]):
                self.npm.add(pid)
            else:
                self.npm.discard(pid)
        if base in ("bwrap", "prlimit") and by in ("", "bwrap", "python3", "python3.11", "prlimit"):
            return
        if by == "prlimit" and not self.launcher_done.get(phase, True):
            self.launcher_done[phase] = ok
            if ok and any(a.endswith("/linger.py") for a in strings[1:6]):
                self.lingerers.add(pid)
            return  # the phase's waiter (and prlimit's PATH search for it)
        if pid in self.launching:
            if ok:
                self.launching.discard(pid)
            return  # the phase's own command, started by the waiter
        argv = " ".join(strings[1:]) if len(strings) > 1 else path
        detail = f"{argv}" + ("" if ok else f" ({err or 'failed'})")
        self._emit("exec", detail, phase, by, base)

    def _open(self, pid: int, phase: str, name: str, path: str, rest: str, err: str) -> None:
        full = self._abs(pid, path)
        writing = name == "creat" or any(f in rest for f in ("O_WRONLY", "O_RDWR", "O_CREAT",
                                                             "O_TRUNC", "O_APPEND"))
        if writing:
            self._write(pid, phase, f"open {full}", path, err)
            return
        if full in self.bait_paths or (full.startswith(self.home + "/")
                                       and not full.startswith(self.package_dir + "/")
                                       and full != self.package_dir
                                       and "/node_modules/" not in full[len(self.home):]):
            by_npm = " (by npm)" if pid in self.npm and full.endswith("/.npmrc") else ""
            self._emit("file", f"read {full}" + (f" ({err})" if err else "") + by_npm, phase,
                       target=full)
        elif re.fullmatch(r"/proc/(\d+|self)/environ", full):
            self._emit("file", f"read {full}", phase, target=full)

    def _write(self, pid: int, phase: str, detail: str, path: str, err: str) -> None:
        full = self._abs(pid, path)
        if pid in self.npm and (full + "/").startswith(f"{self.home}/.npm/"):
            detail += " (by npm)"  # npm's own cache
        if (full == self.package_dir or full.startswith(self.package_dir + "/")
                or full.startswith(("/tmp/", "/dev/")) or full in ("/tmp", "/dev/null")):
            return
        self._emit("write", detail + (f" ({err})" if err else ""), phase, target=full)

    def _net(self, pid: int, phase: str, name: str, rest: str, strings: list[str],
             err: str) -> None:
        if "AF_INET" not in rest:
            return
        port_m = _PORT.search(rest)
        addr_m = _ADDR4.search(rest) or _ADDR6.search(rest)
        if not port_m or not addr_m:
            return
        addr, port = addr_m.group(1), int(port_m.group(1))
        if addr.startswith(LOOPBACK) and port in (53, 80, 443, 8080, 8443):
            return  # the sink reports these, with what was said
        if port == 53 and name == "sendto" and strings:
            qname = dns_name(strings[0].encode("latin-1"))[0]
            self._emit("dns", f"query {qname} to {addr}", phase,
                       bait=tuple(bait_hits(qname.encode(), self.baits)))
            return
        where = f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"
        self._emit("net", f"{name} {where}" + (f" ({err})" if err else ""), phase)
