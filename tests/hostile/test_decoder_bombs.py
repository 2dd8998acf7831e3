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
