"""Issue 14: a large file is read by the browser-hook detector in windows around its needles.

An attacker who knows this spreads a hook over a bundle: the alias of ``self`` or the
constant key ``'fetch'`` hundreds of kilobytes from the assignment that uses it, or a
minifier's one-letter name bound in many places. Each must be found as the whole-file
parse finds it; a polyfill must stay quiet; and the windows must really be windows (the
whole text is parsed only when a name has too many places to follow). Inert fixtures."""

from __future__ import annotations

import pytest

from chainwatch.analysis import engine, hooks
from chainwatch.analysis.rules import load_rules
from chainwatch.model import PackageFile

ENGINE = engine.Engine(load_rules())
#: ordinary code, far more than the window threshold, with no browser-rule needle in it
FILLER = "".join(f"function pad{i}(a, b) {{ return a * {i} + b; }}\n"
                 for i in range(9000))
assert len(FILLER) > engine.WINDOW_THRESHOLD


def _rules(js: str) -> set[str]:
    hooks.find_hooks.cache_clear()
    hooks.find_hooks_windowed.cache_clear()
    found = ENGINE.scan_file(PackageFile("dist/bundle.js", js.encode()))
    return {f.rule for f in found if f.rule.startswith("CW-BROWSER-")}


def _whole_parses() -> int:
    return hooks.find_hooks.cache_info().misses


@pytest.mark.parametrize("js", [
    # alias of the global far above the assignment
    "var g = self;\n" + FILLER + "g.fetch = function (u) { return steal(u); };\n",
    # constant key far from its use, alias far from both
    "var k = 'fetch';\n" + FILLER + "var w = window;\n" + FILLER
    + "var of = w[k]; w[k] = function () { return of.apply(this, arguments); };\n",
    # an alias of an alias of the XHR prototype, spread out
    "var X = XMLHttpRequest;\n" + FILLER + "var P = X.prototype;\n" + FILLER
    + "P.send = function (b) { leak(b); };\n",
    # a wallet provider through an alias declared far away
    "var e = window.ethereum;\n" + FILLER
    + "e.request = function (a) { a.params[0].to = mine; };\n",
])
def test_a_hook_spread_over_a_large_file_is_found(js: str) -> None:
    assert len(js) > engine.DETECTOR_WINDOW_THRESHOLD
    assert _rules(js)
    assert _whole_parses() == 0, "parsed in windows, not whole"


def test_a_binding_longer_than_its_window_is_read_whole() -> None:
    """``var g = <8 kB of condition> ? self : 0``: the window cuts the value, so the file is
    parsed whole rather than the alias lost."""
    cond = " + ".join(f"v{i}" for i in range(2000))
    js = f"var g = ({cond}) > 0 ? self : 0;\n" + FILLER + "g.fetch = function (u) { return u; };\n"
    assert len(cond) > hooks.WINDOW_AFTER
    assert _rules(js) == {"CW-BROWSER-FETCH-HOOK"}


def test_a_name_with_too_many_places_parses_the_whole_file() -> None:
    """A minifier's ``e``, bound in many places: the alias is still followed (whole parse)."""
    rebinds = "".join(f"function q{i}(e) {{ e = e + {i}; return e; }}\n" for i in range(200))
    js = "var e = self;\n" + rebinds + FILLER + "e.fetch = function (u) { return u; };\n"
    assert _rules(js) == {"CW-BROWSER-FETCH-HOOK"}
    assert _whole_parses() == 1


def test_many_names_to_follow_are_bounded() -> None:
    """Hundreds of distinct unresolved holders (each would be a pass over the text): the
    file is parsed whole once instead, and the hook behind them is still found."""
    many = "".join(f"h{i}.fetch = function () {{ return {i}; }};\n" for i in range(300))
    js = "var h7 = self;\n" + FILLER + many
    assert _rules(js) == {"CW-BROWSER-FETCH-HOOK"}
    assert _whole_parses() == 1


@pytest.mark.parametrize("js", [
    FILLER + "if (!globalThis.fetch) { globalThis.fetch = function (u) { return impl(u); }; }\n",
    "var g = self;\n" + FILLER + "var r = g.fetch(url); x.fetch = 1;\n",
    FILLER + "const x = new XMLHttpRequest(); x.open('GET', '/a'); x.send();\n",
])
def test_large_benign_files_stay_quiet(js: str) -> None:
    assert _rules(js) == set()


def test_findings_in_windows_are_those_of_the_whole_file(monkeypatch: pytest.MonkeyPatch) -> None:
    """Same rules, lines and snippets whether the detector reads windows or the whole text."""
    js = ("var k = 'fetch', g = globalThis;\n" + FILLER
          + "const o = g[k]; g[k] = async (...a) => o(...a);\n" + FILLER
          + "Object.defineProperty(window, 'fetch', { value: function () { return 2; } });\n")
    windowed = ENGINE.scan_file(PackageFile("dist/bundle.js", js.encode()))
    monkeypatch.setattr(engine, "DETECTOR_WINDOW_THRESHOLD", 1 << 40)
    hooks.find_hooks_windowed.cache_clear()
    whole = engine.Engine(load_rules()).scan_file(PackageFile("dist/bundle.js", js.encode()))
    assert [f for f in windowed if f.rule.startswith("CW-BROWSER-")]
    assert windowed == whole
