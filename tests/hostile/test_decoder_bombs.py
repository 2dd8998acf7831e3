"""Hostile decoders: the evaluator of analysis/evaluate.py interprets code a stranger wrote, so
an endless loop, a string or array doubling to a gigabyte, unbounded recursion and deep nesting
must each end at a bound (counted in steps, characters, elements and frames, never in time),
leave the call unfolded and leave the rest of the file normalised."""

from __future__ import annotations

import pytest
import tree_sitter as ts

from chainwatch.analysis import jsast
from chainwatch.analysis.evaluate import MAX_STRING, Env, Evaluator, GiveUp
from chainwatch.analysis.normalize import normalize


def _run(src: str, call: str) -> str:
    view = normalize(f"{src}\nString.fromCharCode;\nvar __r = [{call}];\n".encode()).text.decode()
    return view.rsplit("var __r = [", 1)[1].split("];", 1)[0]


@pytest.mark.parametrize("src", [
    "function a(s) { while (true) {} return s; }",                       # loops forever
    "function a(s) { for (;;) { s = s + s; } }",                          # doubles to 1 GB
    "function a(s) { return s.repeat(1e9); }",                             # asks for 1 GB at once
    "function a(s) { var o = []; for (;;) o.push(s); }",                  # an endless array
    "function a(s) { return a(s + 'x'); }",                               # recurses without end
    "function a(s) { return b(s); } function b(s) { return a(s); }",     # mutual recursion
])
def test_hostile_decoders_stay_within_budget(src: str) -> None:
    assert _run(src, "a('ab')") == "a('ab')"


def test_evaluator_budget_is_counted_in_steps() -> None:
    src = b"function a(s) { while (true) {} }\na('x')"
    tree = jsast.parse(src, "js")
    call = tree.root_node.named_children[-1].named_children[0]
    fn = tree.root_node.named_children[0]
    machine = Evaluator(src, lambda name: machine.closure(fn, Env()) if name == "a" else None,
                        steps=1000)
    with pytest.raises(GiveUp):
        machine.expr(call, Env(), 0, 0)
    assert machine.steps < 0
    assert isinstance(call, ts.Node)


def test_deeply_nested_statements_and_expressions_end_at_the_nesting_bound() -> None:
    nested_ifs = "if (1) {" * 400 + "s = s + 'x';" + "}" * 400
    deep_expr = "(" * 300 + "s" + " + 'x')" * 300
    src = (f"function a(s) {{ {nested_ifs} return s; }}\n"
           f"function b(s) {{ return {deep_expr}; }}\n"
           "function c(s) { return s.split('').reverse().join(''); }")
    assert _run(src, "a('q')") == "a('q')"
    assert _run(src, "b('q')") == "b('q')"
    assert _run(src, "c('ba')") == '"ab"'  # the rest of the file still folds


def test_no_string_longer_than_the_bound_is_ever_built() -> None:
    src = "function a(s) { var o = s; while (o.length < 1e9) o = o.concat(o); return o; }"
    assert _run(src, "a('ab')") == "a('ab')"
    ok = f"function a(s) {{ return s.split('').reverse().join('').repeat({MAX_STRING // 2}); }}"
    assert _run(ok, "a('ab')") == '"' + "ba" * (MAX_STRING // 2) + '"'
    too_long = f"function a(s) {{ return s.split('').reverse().join('').repeat({MAX_STRING}); }}"
    assert _run(too_long, "a('ab')") == "a('ab')"


def test_many_decoder_calls_share_one_file_budget() -> None:
    calls = "\n".join(f"var v{i} = a('{'x' * 400}');" for i in range(120))
    src = ("function a(s) { var o = ''; for (var i = 0; i < s.length; i++) "
           "o += String.fromCharCode(s.charCodeAt(i)); return o; }\n")
    view = normalize((src + calls).encode())
    assert "decoder evaluation budget" in view.limits


def test_a_step_that_touches_a_long_string_costs_its_length() -> None:
    """Reversing a 64 KiB string is not one step: it costs one step per BYTES_PER_STEP."""
    from chainwatch.analysis.evaluate import BYTES_PER_STEP
    src = b"function a(s) { return s.split('').reverse().join(''); }\na('x')"
    tree = jsast.parse(src, "js")
    fn = tree.root_node.named_children[0]
    machine = Evaluator(src, lambda name: machine.closure(fn, Env()) if name == "a" else None,
                        steps=10**9)
    machine.call(machine.closure(fn, Env()), ["y" * MAX_STRING], 0)
    # split, reverse and join each touch 64 KiB
    assert 10**9 - machine.steps >= 3 * MAX_STRING // BYTES_PER_STEP


def _burner(n: int) -> bytes:
    # two-character arguments doubled 15 times: exactly 64 KiB; the comment keeps files apart
    return (f"/* {n} */ function d(s){{var t=s;for(var i=0;i<15;i++){{t=t+t;}}var r='';"
            "for(var j=0;j<49000;j++){r=t.split('').reverse().join('');}return r}\n"
            "module.exports = [require(d('ab')),require(d('cd')),"
            "require(d('ef')),require(d('gh'))];\n").encode()


def test_busy_decoders_share_a_package_budget_and_say_so() -> None:
    """Nine files, each with a decoder reversing a 64 KiB string 49,000 times: the package's
    files together spend at most MAX_PACKAGE_EVAL_STEPS, each file at most MAX_EVAL_STEPS,
    the file where the package budget ran out says so, and the later files say their
    decoders were not evaluated; each file still reports its undecoded sinks."""
    from chainwatch.analysis.normalize import (
        MAX_EVAL_STEPS,
        MAX_PACKAGE_EVAL_STEPS,
        package_budget,
    )
    views = []
    with package_budget() as budget:
        for n in range(9):
            before = budget.left
            views.append(normalize(_burner(n)))
            assert before - budget.left <= MAX_EVAL_STEPS
    assert budget.exhausted and budget.used <= MAX_PACKAGE_EVAL_STEPS
    assert any("package decoder evaluation budget" in v.limits for v in views)
    assert any("decoder d() not evaluated: package budget spent" in v.limits
               for v in views[-2:])
    assert all(v.undecoded_sinks for v in views)


def test_scanning_a_package_opens_one_shared_budget(tmp_path: object) -> None:
    """Scanner spends the package budget across the files of one package (not per file)."""
    from pathlib import Path

    from chainwatch.scan import Scanner
    root = Path(str(tmp_path))
    (root / "package.json").write_text('{"name": "burner-x", "version": "1.0.0"}')
    for n in range(9):
        (root / f"b{n}.js").write_bytes(_burner(100 + n))
    with Scanner(None, workers=1) as scanner:
        verdict = scanner.scan(str(root), against="none")
    messages = [f.message for f in verdict.findings if f.rule == "CW-NORMALIZE-LIMIT"]
    assert any("package decoder evaluation budget" in m for m in messages), messages
    assert any("package budget spent" in m for m in messages), messages
