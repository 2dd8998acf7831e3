"""A normalised view of a JS/TS file: constant expressions folded so rules see real API names.

Nothing is executed: tree-sitter parses the file and a small evaluator folds what is constant —
string concatenation and template literals, ``String.fromCharCode(consts)``, hex/unicode/octal
escapes, base64/hex literals passed to ``Buffer.from``/``atob`` (only when the result is printable
text), string-array tables indexed by constants (including javascript-obfuscator's rotated,
base64-encoded table and its accessor function), computed member access with a constant key
(``global['ev'+'al']`` → ``global.eval``), ``require`` of a folded constant, and calls through
``Reflect.apply``, ``Function.prototype.call.call`` and ``f.call/apply/bind``.

The view keeps every line where it was (a replaced span is followed by the newlines it covered)
and :meth:`Normalized.to_original` maps an offset in the view back to the file, so a finding on
the view reports the file's own line and snippet.

Everything a stranger controls is bounded: input size, recursion depth, folds, the length of one
folded string, the output size, rotation attempts and a CPU-time backstop (this thread's CPU
seconds, so a loaded machine finds what an idle one finds) with a far looser wall-clock one. A
bound that is hit stops folding (the surface text is still analysed) and is named in
:attr:`Normalized.limits`.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import json
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Union
from urllib.parse import unquote

import tree_sitter as ts
import yara

from chainwatch.analysis import evaluate, jsast

#: Larger files are normalised only in windows around strong signs (see FULL_BYTES).
MAX_INPUT = 2 * 1024 * 1024
#: Expression nesting followed by the evaluator.
MAX_DEPTH = 64
#: Tree depth at which candidates are still looked for.
MAX_QUERY_DEPTH = 200
#: Nodes evaluated per file.
MAX_FOLDS = 100_000
#: Length of one folded string.
MAX_STRING = 64 * 1024
#: Largest base64/hex literal decoded.
MAX_DECODE = 256 * 1024
#: The view may grow the file by at most this much.
MAX_GROWTH = 1024 * 1024
#: Elements of a string-array table, and rotations tried to match obfuscator.io's checksum.
MAX_TABLE = 20_000
#: CPU-time backstop per file, in this thread's CPU seconds (the count limits above bind first
#: on real input). CPU time, not wall time: a loaded machine must fold what an idle one folds.
MAX_SECONDS = 2.0
#: Wall-clock backstop per file, for a thread starved so long that its CPU budget means little.
MAX_WALL_SECONDS = 30.0
#: Steps the decoder evaluator (analysis/evaluate.py) may take in one file, all calls together.
MAX_EVAL_STEPS = 200_000
#: Steps the decoder evaluator may take in one package, all its files together (see
#: :func:`package_budget`).
MAX_PACKAGE_EVAL_STEPS = 1_000_000


class EvalBudget:
    """Decoder-evaluation steps left for the files of one package (shared by all of them)."""

    def __init__(self, steps: int) -> None:
        self.limit = steps
        self.left = steps

    @property
    def used(self) -> int:
        return self.limit - self.left

    @property
    def exhausted(self) -> bool:
        return self.left <= 0


_PACKAGE_BUDGET: ContextVar[EvalBudget | None] = ContextVar("_PACKAGE_BUDGET", default=None)


@contextmanager
def package_budget(steps: int = MAX_PACKAGE_EVAL_STEPS) -> Iterator[EvalBudget]:
    """Files normalised inside share one decoder-evaluation budget of ``steps``."""
    budget = EvalBudget(steps)
    token = _PACKAGE_BUDGET.set(budget)
    try:
        yield budget
    finally:
        _PACKAGE_BUDGET.reset(token)


#: What a function's text shows when it may be a decoder (the evaluator is tried only there).
_DECODER_SIGN = re.compile(r"charCodeAt|fromCharCode|codePointAt|\.reverse\(|\.split\(|atob|"
                           r"parseInt|\^|\.charAt\(|\.substr(ing)?\(|\.slice\(")
#: What a function's text shows when it visibly transforms strings (a decoder whose output
#: reaches a sink is reported even when the evaluator cannot run it).
_TRANSFORM_SIGN = re.compile(r"charCodeAt|fromCharCode|codePointAt|\.reverse\(|\.split\(|"
                             r"\batob\b|Buffer\.from|\.replace\(|\.substr(ing)?\(|\.slice\(")
_FUNCTION_NODES = ("arrow_function", "function_expression", "function")
#: Evaluations started from inside another (a decoder's constant that is itself decoded).
MAX_NESTED_EVALUATIONS = 3
#: What a decoded value reaching one of these calls is reported as (a decoder sink).
_SINK_CALL = re.compile(
    r"^(eval|Function|require|import|setTimeout|setInterval|fetch|atob|"
    r"(child_process\.)?(exec|execSync|spawn|spawnSync|execFile|execFileSync|fork)|"
    r"(https?|net|tls|dns|http2)\.(get|request|connect|createConnection|lookup|resolve\w*)|"
    r"vm\.(runIn\w*Context|compileFunction)|new (Function|WebSocket|XMLHttpRequest|vm\.Script)|"
    r"[\w$.]*\.(_compile|exec|execSync|spawn|spawnSync))$")

Value = Union[str, float, list["Value"], None]  # noqa: UP007 (recursive alias)

_IDENT = re.compile(r"^[A-Za-z_$][\w$]*$")
_ESCAPE = re.compile(
    r"\\(?:x([0-9a-fA-F]{2})|u\{([0-9a-fA-F]{1,6})\}|u([0-9a-fA-F]{4})|([0-7]{1,3})|(\r\n|[\s\S]))")
_SIMPLE = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "v": "\v",
           "\n": "", "\r\n": "", "\u2028": "", "\u2029": ""}
_OBF_B64 = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/="
_STD_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="
_TO_STD = str.maketrans(_OBF_B64, _STD_B64)
_GLOBAL_ROOTS = {"global", "globalThis", "window", "self", "process", "Reflect", "Function",
                 "require", "module", "this"}
_GLOBAL_CALL = re.compile(rb"^(global|globalThis|window|self)\s*\.\s*(eval|Function)\s*\(")
#: Node built-in modules whose aliases (``const o = require('o' + 's')``) are read under the
#: module's own name in the view (``o.homedir()`` → ``os.homedir()``), as rules spell them.
BUILTIN_MODULES = {"os", "fs", "path", "child_process", "http", "https", "http2", "net", "tls",
                   "dns", "dgram", "crypto", "vm", "zlib", "module", "worker_threads"}
_NULLISH = {"null", "undefined", "void 0", "this", "global", "globalThis", "window", "self"}

#: Nodes the evaluator looks at (everything else is copied as it is). Ordinary code is full of
#: ``a[i]``, ``f(x)`` and ``o.m()``: only the shapes that can fold are candidates, so a large
#: bundle costs little more than its parse.
_METHODS = ("call", "apply", "bind", "fromCharCode", "from", "toString", "join", "reverse",
            "split", "concat", "replace", "toLowerCase", "toUpperCase", "trim", "map")
_CANDIDATES = """
(string (escape_sequence)) @c
(template_string [(template_substitution) (escape_sequence)]) @c
(binary_expression left: [(string) (template_string)] operator: "+") @c
(binary_expression operator: "+" right: [(string) (template_string)]) @c
(subscript_expression index: [(string) (template_string) (binary_expression)
                              (call_expression) (parenthesized_expression)]) @c
(call_expression function: (member_expression property: (property_identifier) @p)
  (#any-of? @p %s)) @c
(call_expression function: (subscript_expression)) @c
(call_expression function: (call_expression function: (member_expression
  property: (property_identifier) @b (#eq? @b "bind")))) @c
(new_expression constructor: (identifier) @n (#eq? @n "Buffer")) @c
(call_expression function: (identifier) @f (#eq? @f "atob")) @c
(computed_property_name) @c
""".replace("%s", " ".join(f'"{m}"' for m in _METHODS))


def _any_of(names: set[str]) -> str:
    return " ".join(json.dumps(n) for n in sorted(names))


def unescape_js(raw: str) -> str:
    """The value of a JS string literal's body (quotes removed)."""
    def one(m: re.Match[str]) -> str:
        hx, brace, uni, octal, other = m.groups()
        if hx:
            return chr(int(hx, 16))
        if brace:
            code = int(brace, 16)
            return chr(code) if code <= 0x10FFFF else "\ufffd"
        if uni:
            return chr(int(uni, 16))
        if octal:
            return "\0" if octal == "0" else chr(int(octal, 8) & 0xFF)
        return _SIMPLE.get(other, other)

    text = _ESCAPE.sub(one, raw)
    if any("\ud800" <= ch <= "\udfff" for ch in text):
        text = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return text


def js_number(text: str) -> float | None:
    t = text.replace("_", "").lower()
    try:
        if t.startswith("0x"):
            return float(int(t[2:], 16))
        if t.startswith("0o"):
            return float(int(t[2:], 8))
        if t.startswith("0b"):
            return float(int(t[2:], 2))
        if t.endswith("n"):
            return None
        return float(t)
    except ValueError:
        return None


def js_str(value: Value) -> str | None:
    """String conversion as JS does it, for the values we fold."""
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        if value != value:
            return "NaN"
        if value == int(value) and abs(value) < 1e21:
            return str(int(value))
        return repr(value)
    if isinstance(value, list):
        parts = [js_str(v) if v is not None else "" for v in value]
        return None if any(p is None for p in parts) else ",".join(p or "" for p in parts)
    return None


def parse_int(value: Value) -> float:
    """JavaScript's ``parseInt(x)`` for strings and numbers (NaN otherwise)."""
    text = js_str(value)
    if text is None:
        return float("nan")
    m = re.match(r"\s*([+-]?)(\d+)", text)
    if not m:
        return float("nan")
    return float(int(m.group(2))) * (-1.0 if m.group(1) == "-" else 1.0)


def _printable(text: str) -> bool:
    if not text:
        return False
    good = sum(ch.isprintable() or ch in "\n\r\t" for ch in text)
    return "\0" not in text and good >= 0.95 * len(text)


def decode_literal(data: str, encoding: str) -> str | None:
    """Base64 or hex text decoded, when the result is printable text; None otherwise."""
    if len(data) > MAX_DECODE:
        return None
    try:
        if encoding in ("base64", "base64url"):
            padded = data.strip() + "=" * (-len(data.strip()) % 4)
            raw = base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
        elif encoding == "hex":
            raw = binascii.unhexlify(data.strip())
        else:
            return None
        text = raw.decode("utf-8")
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None
    return text if _printable(text) else None


def quote(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


class LimitHit(Exception):
    """A bound was reached; folding stops."""


@dataclass
class Normalized:
    """The normalised view of one file."""

    text: bytes
    #: (view start, view end, file start, file end) of each replaced span, in order.
    spans: list[tuple[int, int, int, int]] = field(default_factory=list)
    #: Bounds that stopped folding early (empty when the whole file was normalised).
    limits: list[str] = field(default_factory=list)
    folds: int = 0
    #: Values a hand-written decoder of the file produced that reach a sensitive call or a
    #: global's member: (file start, file end, the call or object, the decoded value).
    decoder_sinks: list[tuple[int, int, str, str]] = field(default_factory=list)
    #: decoder calls the evaluator did not decode whose result reaches such a place:
    #: (file start, file end, the call or object, the decoder call's text).
    undecoded_sinks: list[tuple[int, int, str, str]] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.spans)

    def touches(self, start: int, end: int) -> bool:
        """Whether the view range [start, end) holds any replaced (folded) text."""
        i = bisect.bisect_left([s[1] for s in self.spans], start + 1)
        return i < len(self.spans) and self.spans[i][0] < end

    def to_original(self, offset: int) -> int:
        """The file offset of a view offset: inside a replaced span, the span's start."""
        i = bisect.bisect_right([s[0] for s in self.spans], offset) - 1
        if i < 0:
            return offset
        _, ve, fs, fe = self.spans[i]
        if offset < ve:
            return fs
        return fe + (offset - ve)


@dataclass
class _Table:
    values: list[str]
    offset: int = 0
    encoding: str = ""          # "" or "base64" (obfuscator.io's own alphabet)


class _Folder:
    def __init__(self, data: bytes, tree: ts.Tree, lang: str) -> None:
        self.data = data
        self.tree = tree
        self.lang = lang
        self.folds = 0
        self.deadline = time.thread_time() + MAX_SECONDS
        self.wall_deadline = time.monotonic() + MAX_WALL_SECONDS
        self.limits: list[str] = []
        self.memo: dict[int, Value] = {}
        #: nodes whose value is being worked out: a binding that leads back to itself
        #: (``a = b[0]; b = f(a[0])``) is no constant, not an endless descent
        self.computing: set[int] = set()
        self.consts: dict[str, ts.Node] = {}
        self.aliases: dict[str, ts.Node] = {}
        self.accessors: dict[str, _Table] = {}
        self.render_memo: dict[int, bytes] = {}
        self.cands: list[ts.Node] = []
        self.starts: list[int] = []
        self.changed: set[int] = set()
        #: names bound once to a global path or a built-in module: their members are read
        #: through it (``e.NPM_TOKEN`` with ``e = process['e'+'nv']`` → ``process.env.NPM_TOKEN``)
        self.objects: dict[str, ts.Node | str] = {}
        #: the file's own functions by name (declared once), candidates for decoders
        self.functions: dict[str, ts.Node] = {}
        self.package = _PACKAGE_BUDGET.get()
        self.eval_steps = MAX_EVAL_STEPS
        #: decoder calls the evaluator gave up on: (call node, why)
        self.undecoded: dict[int, str] = {}
        #: nodes whose value the decoder evaluator produced, and where such values went
        self.decoded: set[int] = set()
        self.sinks: list[tuple[int, int, str, str]] = []
        self.evaluating = 0
        self.decoder_like: dict[str, bool] = {}

    # -- helpers ------------------------------------------------------------------------------
    def text(self, node: ts.Node) -> str:
        return self.data[node.start_byte:node.end_byte].decode("utf-8", "replace")

    def tick(self) -> None:
        self.folds += 1
        if self.folds > MAX_FOLDS:
            raise LimitHit(f"more than {MAX_FOLDS} folds")
        if self.folds % 1024 == 0:
            self.check_time()

    def check_time(self) -> None:
        if time.thread_time() > self.deadline:
            raise LimitHit(f"more than {MAX_SECONDS:g} CPU s")
        if time.monotonic() > self.wall_deadline:
            raise LimitHit(f"more than {MAX_WALL_SECONDS:g} s")

    def query(self, source: str, cached: bool = True) -> list[tuple[int, dict[str, list[ts.Node]]]]:
        """Matches of a query; one built from this file's names is compiled and not cached."""
        if cached:
            compiled = jsast.compile_query(self.lang, source)
        else:
            try:
                compiled = ts.Query(jsast.language(self.lang), source)
            except (ts.QueryError, ValueError):
                compiled = None
        if compiled is None:
            return []
        cursor = ts.QueryCursor(compiled)
        # matching is quadratic in nesting depth: 100k nested '+' would take minutes. A match
        # starts no deeper than this (a long chain is folded from its outermost node).
        cursor.set_max_start_depth(MAX_QUERY_DEPTH)
        return list(cursor.matches(self.tree.root_node))

    # -- bindings ----------------------------------------------------------------------------
    def collect_bindings(self) -> None:
        """Names bound once to a value and never assigned again: constants, aliases, tables."""
        declared: dict[str, list[ts.Node]] = {}
        for _, cap in self.query("(variable_declarator name: (identifier) @n value: (_) @v)"):
            declared.setdefault(self.text(cap["n"][0]), []).append(cap["v"][0])
        assigned: set[str] = set()
        for _, cap in self.query("""
            (assignment_expression left: (identifier) @a)
            (augmented_assignment_expression left: (identifier) @a)
            (update_expression argument: (identifier) @a)"""):
            assigned.add(self.text(cap["a"][0]))
        for name, values in declared.items():
            if len(values) == 1 and name not in assigned:
                self.consts[name] = values[0]
        functions: dict[str, list[ts.Node]] = {}
        for _, cap in self.query("(function_declaration name: (identifier) @n) @f"):
            functions.setdefault(self.text(cap["n"][0]), []).append(cap["f"][0])
        for name, bound in self.consts.items():
            if bound.type in ("arrow_function", "function_expression", "function"):
                functions.setdefault(name, []).append(bound)
        self.functions = {name: nodes[0] for name, nodes in functions.items()
                          if len(nodes) == 1 and name not in assigned
                          and nodes[0].end_byte - nodes[0].start_byte
                          <= evaluate.MAX_FUNCTION_BYTES}
        self._obfuscator_tables()

    def _obfuscator_tables(self) -> None:
        """javascript-obfuscator's string array: ``function T(){var a=[...];T=function(){return
        a;};return T();}``, an accessor ``function A(i,k){var t=T();return A=function(i,k){i=i-N;
        ...}, A(i,k);}`` and a rotation loop ``(function(f,x){...push(...shift())...}(T, 0x...))``.
        """
        tables: dict[str, list[str]] = {}
        for _, cap in self.query("""
            (function_declaration name: (identifier) @name
              body: (statement_block (_ (variable_declarator value: (array) @arr))))"""):
            values = self.const(cap["arr"][0], 0)
            if isinstance(values, list) and 2 <= len(values) <= MAX_TABLE and all(
                    isinstance(v, str) for v in values):
                tables[self.text(cap["name"][0])] = [v for v in values if isinstance(v, str)]
        if not tables:
            return
        for _, cap in self.query("(function_declaration name: (identifier) @name body: (_) @body)"):
            name, body = self.text(cap["name"][0]), self.text(cap["body"][0])
            for table_name, table_values in tables.items():
                if name == table_name or not re.search(rf"\b{re.escape(table_name)}\s*\(\s*\)", body):
                    continue
                shift = re.search(r"\b([\w$]+)\s*=\s*\1\s*-\s*(\(?-?\s*0x[0-9a-fA-F]+|\d+)", body)
                offset = int(js_number(shift.group(2).strip("( ").replace(" ", "")) or 0) if shift else 0
                encoding = "base64" if _OBF_B64 in body and "rc4" not in body.lower() else ""
                if "String.fromCharCode" in body and "%" in body and encoding:
                    encoding = "" if re.search(r"\^\s*\w+\[", body) else encoding  # rc4: not decoded
                self.accessors[name] = _Table(table_values, offset, encoding)
        for _, cap in self.query("""
            (call_expression arguments: (arguments (identifier) @t (number) @goal)) @call"""):
            table_name = self.text(cap["t"][0])
            if table_name in tables:
                self._rotate(table_name, cap["call"][0], js_number(self.text(cap["goal"][0])))

    def _rotate(self, table_name: str, call: ts.Node, goal: float | None) -> None:
        """Rotate a table until the obfuscator's checksum expression equals its goal."""
        fn = call.child_by_field_name("function")
        while fn is not None and fn.type == "parenthesized_expression":
            fn = fn.named_children[0] if fn.named_children else None
        if fn is None or goal is None:
            return
        checks = [n for n in _descendants(fn, "variable_declarator", 2000)
                  if "parseInt" in self.text(n)]
        if not checks or checks[0].child_by_field_name("value") is None:
            return
        expr = checks[0].child_by_field_name("value")
        assert expr is not None
        tables = [t for t in self.accessors.values() if t.values is not None]
        shared = {id(t.values) for t in tables}
        if not tables or len(shared) != 1:
            return
        values = tables[0].values
        for _ in range(min(len(values), MAX_TABLE)):
            self.memo.clear()
            try:
                got = self._arith(expr, 0)
            except (LimitHit, ZeroDivisionError, IndexError, OverflowError):
                got = None
            if got == goal:
                self.memo.clear()
                return
            values.append(values.pop(0))
        self.limits.append("string-array rotation not found")
        self.memo.clear()

    def _arith(self, node: ts.Node, depth: int) -> float | None:
        """Numbers of the rotation checksum: parseInt(accessor(n)), + - * /, unary -."""
        self.tick()
        if depth > MAX_DEPTH:
            raise LimitHit("expression deeper than the depth limit")
        kind = node.type
        if kind == "parenthesized_expression" and node.named_children:
            return self._arith(node.named_children[0], depth + 1)
        if kind == "number":
            return js_number(self.text(node))
        if kind == "unary_expression":
            arg = node.child_by_field_name("argument")
            value = self._arith(arg, depth + 1) if arg is not None else None
            sign = self.text(node)[:1]
            return None if value is None else (-value if sign == "-" else value)
        if kind == "binary_expression":
            left, right = node.child_by_field_name("left"), node.child_by_field_name("right")
            op = node.child_by_field_name("operator")
            if left is None or right is None or op is None:
                return None
            a, b = self._arith(left, depth + 1), self._arith(right, depth + 1)
            if a is None or b is None:
                return None
            o = self.text(op)
            if o == "+":
                return a + b
            if o == "-":
                return a - b
            if o == "*":
                return a * b
            if o == "/":
                return a / b if b else float("nan")
            return None
        if kind == "call_expression" and self.text(node.child_by_field_name("function") or node) \
                == "parseInt":
            args = (node.child_by_field_name("arguments") or node).named_children
            return parse_int(self.const(args[0], depth + 1)) if args else float("nan")
        return None

    # -- constant values ---------------------------------------------------------------------
    def const(self, node: ts.Node, depth: int) -> Value:
        key = node.id
        if key in self.memo:
            return self.memo[key]
        self.tick()
        if depth > MAX_DEPTH:
            raise LimitHit("expression deeper than the depth limit")
        if key in self.computing:
            return None
        self.computing.add(key)
        try:
            value = self._const(node, depth)
        finally:
            self.computing.discard(key)
        if isinstance(value, str) and len(value) > MAX_STRING:
            value = None
        self.memo[key] = value
        return value

    def _const(self, node: ts.Node, depth: int) -> Value:
        kind = node.type
        if kind == "string":
            return unescape_js(self.text(node)[1:-1])
        if kind == "number":
            return js_number(self.text(node))
        if kind == "template_string":
            out: list[str] = []
            for child in node.children:
                if child.type == "template_substitution":
                    inner = child.named_children
                    part = js_str(self.const(inner[0], depth + 1)) if inner else None
                    if part is None:
                        return None
                    out.append(part)
                elif child.type in ("string_fragment", "escape_sequence"):
                    out.append(unescape_js(self.text(child)))
            return "".join(out)
        if kind == "parenthesized_expression" and len(node.named_children) == 1:
            return self.const(node.named_children[0], depth + 1)
        if kind == "unary_expression" and self.text(node).startswith("-"):
            arg = node.child_by_field_name("argument")
            number = self.const(arg, depth + 1) if arg is not None else None
            return -number if isinstance(number, float) else None
        if kind == "binary_expression":
            return self._concat(node, depth)
        if kind == "array":
            items = [self.const(c, depth + 1) for c in node.named_children]
            return None if any(i is None for i in items) else items
        if kind == "identifier":
            bound = self.consts.get(self.text(node))
            if bound is not None and bound.type != "identifier" and not (
                    bound.start_byte <= node.start_byte < bound.end_byte):
                value = self.const(bound, depth + 1)
                if bound.id in self.decoded:
                    self.decoded.add(node.id)
                return value
            return None
        if kind == "subscript_expression":
            obj, index = node.child_by_field_name("object"), node.child_by_field_name("index")
            if obj is None or index is None:
                return None
            i = self.const(index, depth + 1)
            target = self.const(obj, depth + 1) if obj.type in ("identifier", "array") else None
            if isinstance(target, list) and isinstance(i, float) and 0 <= i < len(target) \
                    and i == int(i):
                return target[int(i)]
            if isinstance(target, str) and i == "length":
                return float(len(target))
            return None
        if kind in ("call_expression", "new_expression"):
            value = self._call_value(node, depth)
            if value is None and kind == "call_expression":
                value = self._decoded(node)
            return value
        return None

    def _decoded(self, node: ts.Node) -> Value:
        """A call of the file's own small pure function (or a ``.map`` callback) on constant
        values, run by the bounded evaluator of analysis/evaluate.py; None when it cannot."""
        fn = node.child_by_field_name("function")
        if fn is None or self.evaluating >= MAX_NESTED_EVALUATIONS:
            return None
        if fn.type == "identifier":
            if not self._decoder_like(self.text(fn)):
                return None
        elif not (fn.type == "member_expression" and self.text(
                fn.child_by_field_name("property") or fn) in ("map", "join")):
            return None
        # only on constants: a call with a variable argument cannot fold, so it is not tried
        args = self._args(node)
        if fn.type == "identifier" and (not args or any(
                a.type in _FUNCTION_NODES or self.const(a, 1) is None for a in args)):
            return None
        name = self.text(fn) if fn.type == "identifier" else ""
        if self.eval_steps <= 0 or (self.package is not None and self.package.exhausted):
            self._gave_up(node, name, "file budget spent" if self.eval_steps <= 0
                          else "package budget spent")
            return None
        self.check_time()
        allowed = min(evaluate.MAX_STEPS, self.eval_steps,
                      self.package.left if self.package is not None else evaluate.MAX_STEPS)
        machine = evaluate.Evaluator(self.data, self._resolve, allowed)
        self.evaluating += 1
        why = ""
        try:
            value = machine.expr(node, evaluate.Env(), 0, 0)
        except evaluate.GiveUp as exc:
            value, why = None, str(exc)
        except RecursionError:  # cannot happen: MAX_NESTING
            value, why = None, "nesting"
        finally:
            self.evaluating -= 1
            used = max(0, min(allowed, allowed - machine.steps))
            self.eval_steps -= used
            if self.package is not None:
                self.package.left -= used
        if self.eval_steps <= 0 and "decoder evaluation budget" not in self.limits:
            self.limits.append("decoder evaluation budget")
        if self.package is not None and self.package.exhausted and \
                "package decoder evaluation budget" not in self.limits:
            self.limits.append("package decoder evaluation budget")
        if why:
            self._gave_up(node, name, why)
        if not isinstance(value, str) or len(value) > MAX_STRING:
            return None
        self.decoded.add(node.id)
        return value

    def _gave_up(self, node: ts.Node, name: str, why: str) -> None:
        """A decoder-like call left as it is: named among the limits (at most 8 a file)."""
        if not name or node.id in self.undecoded:
            return
        self.undecoded[node.id] = why
        note = f"decoder {name}() not evaluated: {why[:40]}"
        noted = sum(x.startswith("decoder ") and " not evaluated" in x for x in self.limits)
        if noted < 8 and note not in self.limits:
            self.limits.append(note)

    def _decoder_like(self, name: str, seen: int = 0) -> bool:
        """A function of the file whose text transforms strings (char codes, reversal,
        splitting, base64), or that calls one that does (a wrapper), at most 4 levels."""
        if name in self.decoder_like:
            return self.decoder_like[name]
        node = self.functions.get(name)
        found = False
        if node is not None and seen < 4:
            text = self.text(node)
            found = bool(_DECODER_SIGN.search(text)) or any(
                other != name and self._decoder_like(other, seen + 1)
                for other in set(re.findall(r"([A-Za-z_$][\w$]*)\s*\(", text)) & set(self.functions))
        self.decoder_like[name] = found
        return found

    def _resolve(self, name: str) -> evaluate.JsValue | None:
        """What a free name of a decoder is: another function of the file, or a constant."""
        if name in self.functions:
            return evaluate.Closure(*self._closure_parts(self.functions[name]))
        bound = self.consts.get(name)
        if bound is None or bound.type in ("arrow_function", "function_expression"):
            return None
        value = self.const(bound, 1)
        if isinstance(value, (str, float)):
            return value
        if isinstance(value, list):
            items: list[evaluate.JsValue] = [v for v in value if isinstance(v, (str, float))]
            # a copy: the evaluator may reverse or push
            return items if len(items) == len(value) else None
        return None

    def _closure_parts(self, node: ts.Node) -> tuple[list[str], ts.Node, evaluate.Env, bytes]:
        machine = evaluate.Evaluator(self.data, self._resolve, 1)
        c = machine.closure(node, evaluate.Env())
        return c.params, c.body, c.env, c.data

    def _concat(self, node: ts.Node, depth: int) -> Value:
        # walk the left spine iteratively: 'a'+'b'+…+'z' nests as deep as it is long
        rights: list[ts.Node] = []
        cur = node
        while cur.type == "binary_expression":
            op = cur.child_by_field_name("operator")
            left, right = cur.child_by_field_name("left"), cur.child_by_field_name("right")
            if op is None or self.text(op) != "+" or left is None or right is None:
                return None
            self.tick()
            rights.append(right)
            cur = left
        acc = self.const(cur, depth + 1)
        total = 0
        for right in reversed(rights):
            value = self.const(right, depth + 1)
            if acc is None or value is None:
                return None
            if isinstance(acc, float) and isinstance(value, float):
                acc = acc + value
                continue
            a, b = js_str(acc), js_str(value)
            if a is None or b is None:
                return None
            total = len(a) + len(b)
            if total > MAX_STRING:
                return None
            acc = a + b
        return acc

    def _callee(self, node: ts.Node) -> tuple[ts.Node | None, str]:
        """The object and property name of a member call (``o.p(…)``, ``o['p'](…)``)."""
        fn = node.child_by_field_name("function") or node.child_by_field_name("constructor")
        if fn is None:
            return None, ""
        if fn.type == "member_expression":
            prop = fn.child_by_field_name("property")
            return fn.child_by_field_name("object"), self.text(prop) if prop else ""
        if fn.type == "subscript_expression":
            index = fn.child_by_field_name("index")
            name = self.const(index, 1) if index is not None else None
            return fn.child_by_field_name("object"), name if isinstance(name, str) else ""
        return None, self.text(fn) if fn.type == "identifier" else ""

    def _accessor(self, name: str) -> _Table | None:
        """The string table behind an accessor function or an alias of it (``var a=b``)."""
        for _ in range(8):
            if name in self.accessors:
                return self.accessors[name]
            bound = self.consts.get(name)
            if bound is None or bound.type != "identifier":
                return None
            name = self.text(bound)
        return None

    def _args(self, node: ts.Node) -> list[ts.Node]:
        args = node.child_by_field_name("arguments")
        return list(args.named_children) if args is not None else []

    def _call_value(self, node: ts.Node, depth: int) -> Value:
        obj, name = self._callee(node)
        args = self._args(node)
        objtext = self.text(obj) if obj is not None else ""
        if obj is None and args and (table := self._accessor(name)) is not None:
            return self._lookup(table, args, depth)
        if obj is None and name == "atob" and len(args) == 1:
            data = self.const(args[0], depth + 1)
            return decode_literal(data, "base64") if isinstance(data, str) else None
        if objtext == "String" and name == "fromCharCode":
            codes = [self.const(a, depth + 1) for a in args]
            if all(isinstance(c, float) and 0 <= c < 0x110000 for c in codes):
                return "".join(chr(int(c)) for c in codes if isinstance(c, float))
            return None
        if (objtext == "Buffer" and name == "from") or (node.type == "new_expression"
                                                          and name == "Buffer"):
            return self._buffer(args, depth)
        if obj is None:
            return None
        if name == "toString" and obj.type in ("call_expression", "new_expression"):
            inner_obj, inner_name = self._callee(obj)
            if inner_name in ("from", "Buffer") and (
                    inner_obj is None or self.text(inner_obj) == "Buffer"):
                return self._buffer(self._args(obj), depth)
        base = self.const(obj, depth + 1)
        if base is None:
            return None
        values = [self.const(a, depth + 1) for a in args]
        if any(v is None for v in values):
            return None
        if isinstance(base, list):
            if name == "join":
                sep = js_str(values[0]) if values else ","
                parts = [js_str(v) for v in base]
                if sep is None or any(p is None for p in parts):
                    return None
                return sep.join(p or "" for p in parts)
            if name == "reverse" and not values:
                return list(reversed(base))
            return None
        if isinstance(base, str):
            if name == "split" and values == [""]:
                return list(base)
            if name == "concat":
                parts = [js_str(v) for v in values]
                return None if any(p is None for p in parts) else base + "".join(
                    p or "" for p in parts)
            if name in ("toString", "valueOf", "trim") and not values:
                return base.strip() if name == "trim" else base
            if name in ("toLowerCase", "toUpperCase") and not values:
                return base.lower() if name == "toLowerCase" else base.upper()
            if name == "replace" and len(values) == 2 and all(isinstance(v, str) for v in values):
                return base.replace(str(values[0]), str(values[1]), 1)
        return None

    def _buffer(self, args: list[ts.Node], depth: int) -> Value:
        if not args or len(args) > 2:
            return None
        data = self.const(args[0], depth + 1)
        encoding = self.const(args[1], depth + 1) if len(args) == 2 else "utf8"
        if not isinstance(data, str) or not isinstance(encoding, str):
            return None
        if encoding.lower() in ("utf8", "utf-8"):
            return data
        return decode_literal(data, encoding.lower())

    def _lookup(self, table: _Table, args: list[ts.Node], depth: int) -> Value:
        index = self.const(args[0], depth + 1)
        if not isinstance(index, float):
            return None
        i = int(index) - table.offset
        if not 0 <= i < len(table.values):
            return None
        value = table.values[i]
        if table.encoding == "base64":
            try:
                raw = base64.b64decode(value.translate(_TO_STD) + "=" * (-len(value) % 4))
                value = unquote("".join(f"%{b:02x}" for b in raw))
            except (ValueError, binascii.Error):
                return None
        return value

    # -- rendering ----------------------------------------------------------------------------
    def collect_candidates(self) -> None:
        nodes: dict[int, ts.Node] = {}
        calls = set(self.accessors)
        values: set[str] = set()
        arrays: set[str] = set()
        for name, bound in self.consts.items():
            module = self._builtin(bound)
            if module is not None and module != name:
                self.objects[name] = module
            if bound.type in ("member_expression", "subscript_expression") and \
                    _root(bound, self.data) in _GLOBAL_ROOTS - {"this", "require", "module"}:
                self.objects[name] = bound
            if (bound.type == "identifier" and self._accessor(name) is not None) or (
                    bound.type in ("member_expression", "subscript_expression")
                    and _root(bound, self.data) in _GLOBAL_ROOTS):
                calls.add(name)
            elif bound.type in ("string", "template_string", "binary_expression", "array",
                                "call_expression", "subscript_expression"):
                value = self.const(bound, 0)
                if isinstance(value, str):
                    values.add(name)
                elif isinstance(value, list):
                    arrays.add(name)
        for _, cap in self.query(_CANDIDATES):
            for node in cap.get("c", []):
                nodes[node.id] = node
        source = ""
        decoders = {n for n in self.functions if n not in self.accessors and self._decoder_like(n)}
        if decoders:
            source += f"""
            (call_expression function: (identifier) @d (#any-of? @d {_any_of(decoders)})) @c"""
        if calls:
            source += f"""
            (call_expression function: (identifier) @f (#any-of? @f {_any_of(calls)})) @c"""
        if values:
            source += f"""
            (arguments (identifier) @c (#any-of? @c {_any_of(values)}))
            (binary_expression [left: (identifier) @v right: (identifier) @v]
              (#any-of? @v {_any_of(values)})) @c
            (subscript_expression index: (identifier) @v (#any-of? @v {_any_of(values)})) @c"""
        if arrays:
            source += f"""
            (subscript_expression object: (identifier) @a (#any-of? @a {_any_of(arrays)})) @c
            (subscript_expression index: (subscript_expression object: (identifier) @a
              (#any-of? @a {_any_of(arrays)}))) @c"""
        if self.objects:
            source += f"""
            (member_expression object: (identifier) @o (#any-of? @o {_any_of(set(self.objects))})) @c
            (subscript_expression object: (identifier) @o
              (#any-of? @o {_any_of(set(self.objects))})) @c"""
        for _, cap in self.query(source, cached=False) if source else ():
            for node in cap.get("c", []):
                nodes[node.id] = node
        self.cands = sorted(nodes.values(), key=lambda n: (n.start_byte, -n.end_byte))
        self.starts = [n.start_byte for n in self.cands]

    def _builtin(self, bound: ts.Node) -> str | None:
        """The built-in module a ``require(…)`` of a constant name loads, else None."""
        if bound.type != "call_expression":
            return None
        fn, args = bound.child_by_field_name("function"), self._args(bound)
        if fn is None or fn.type != "identifier" or self.text(fn) != "require" or len(args) != 1:
            return None
        name = self.const(args[0], 1)
        if not isinstance(name, str):
            return None
        name = name.removeprefix("node:")
        return name if name in BUILTIN_MODULES else None

    def _object(self, node: ts.Node, depth: int) -> bytes | None:
        """How an alias of a global path or module reads in the view (None: not one)."""
        if node.type != "identifier":
            return None
        target = self.objects.get(self.text(node))
        if target is None:
            return None
        if isinstance(target, str):
            return target.encode()
        if target.start_byte <= node.start_byte < target.end_byte:
            return None
        return self.render(target, depth + 1)

    def render(self, node: ts.Node, depth: int) -> bytes:
        if node.id in self.render_memo:
            return self.render_memo[node.id]
        if depth > MAX_DEPTH:
            raise LimitHit("expression deeper than the depth limit")
        self.tick()
        out = self._render(node, depth)
        self.render_memo[node.id] = out
        return out

    def _render(self, node: ts.Node, depth: int) -> bytes:
        kind = node.type
        original = self.data[node.start_byte:node.end_byte]
        if kind == "computed_property_name" and node.named_children:
            # { ['run' + 'On']: … } is { runOn: … }
            key = self.const(node.named_children[0], depth + 1)
            if isinstance(key, str):
                return (key if _IDENT.match(key) else quote(key)).encode("utf-8", "replace")
            return self.splice(node.start_byte, node.end_byte, depth, skip=node)
        if kind in ("member_expression", "subscript_expression"):
            obj = node.child_by_field_name("object")
            alias = self._object(obj, depth) if obj is not None else None
            if alias is not None and obj is not None:
                rest = self.splice(obj.end_byte, node.end_byte, depth, skip=None)
                if kind == "member_expression" or not rest.lstrip().startswith(b"["):
                    return alias + rest
                return self._subscript_tail(alias, node, depth) or alias + rest
        if kind in ("string", "template_string", "binary_expression", "call_expression",
                    "new_expression", "subscript_expression", "identifier"):
            value = self.const(node, depth + 1)
            if isinstance(value, str) and not (kind == "identifier" and len(value) > 256):
                if node.id in self.decoded:
                    self._note_sink(node, value, depth)
                folded = quote(value).encode("utf-8", "replace")
                # code decoded from a call (atob, Buffer.from, fromCharCode) keeps a marker
                folded += b"/*decoded*/" if kind.endswith("call_expression") and "(" in value else b""
                return original if folded == original else folded
        if kind == "subscript_expression":
            obj, index = node.child_by_field_name("object"), node.child_by_field_name("index")
            key = self.const(index, depth + 1) if index is not None else None
            if obj is not None and isinstance(key, str) and (
                    index is None or index.type != "string" or _IDENT.match(key)):
                if index is not None and index.id in self.decoded:
                    self._note_sink(index, key, depth)
                head = self.render(obj, depth + 1)
                tail = ("." + key) if _IDENT.match(key) else f"[{quote(key)}]"
                return head + tail.encode("utf-8", "replace")
        if kind == "call_expression":
            call = self._render_call(node, depth)
            if call is None:
                call = self.splice(node.start_byte, node.end_byte, depth, skip=node)
            # global.eval(x) and window.Function(x) are eval and Function
            return _GLOBAL_CALL.sub(rb"\2(", call, count=1)
        return self.splice(node.start_byte, node.end_byte, depth, skip=node)

    def _note_sink(self, node: ts.Node, value: str, depth: int) -> None:
        """Where a decoder's output goes: the argument of a sensitive call, or the name of a
        member of a global (``window[d('hctef')]``, ``require(d('ssecorp_dlihc'))``)."""
        where = self._sink_place(node, depth)
        if where and len(self.sinks) < 64:
            self.sinks.append((node.start_byte, node.end_byte, where[:80], value[:120]))

    def _sink_place(self, node: ts.Node, depth: int) -> str:
        """The sensitive call ``node`` is an argument of, or the global whose member it names
        (``window[…]``); "" when it is neither."""
        parent = node.parent
        if parent is not None and parent.type == "arguments" and parent.parent is not None:
            call = parent.parent
            fn = call.child_by_field_name("function") or call.child_by_field_name("constructor")
            if fn is not None:
                name = self.render(fn, depth + 1).decode("utf-8", "replace")
                name = ("new " + name) if call.type == "new_expression" else name
                return name if _SINK_CALL.match(name) else ""
        elif parent is not None and parent.type == "subscript_expression" and \
                parent.child_by_field_name("index") == node:
            root = _root(parent, self.data)
            if root in _GLOBAL_ROOTS - {"this", "module"} or root == "document" or (
                    root and root in self.objects):
                obj = parent.child_by_field_name("object") or node
                return self.render(obj, depth + 1).decode("utf-8", "replace") + "[…]"
        return ""

    def undecoded_sinks(self) -> list[tuple[int, int, str, str]]:
        """Calls of a file function that visibly transforms strings, on constant arguments,
        whose result goes straight (or through one constant binding) to a sensitive call or a
        global's member, and that the evaluator did not decode: (start, end, where, call)."""
        found: list[tuple[int, int, str, str]] = []
        bound: dict[str, ts.Node] = {}
        for _, cap in self.query("(call_expression function: (identifier) @f) @c"):
            call, name = cap["c"][0], self.text(cap["f"][0])
            if call.id in self.decoded or name not in self.functions or \
                    self._accessor(name) is not None or not self._transforms(name):
                continue
            args = self._args(call)
            values = [None if a.type in _FUNCTION_NODES else self.const(a, 1) for a in args]
            if not args or any(v is None for v in values) or not any(
                    isinstance(v, (str, list)) for v in values):
                continue  # a minifier's table indexed by numbers, or not constant
            if all(not isinstance(v, str) or v.startswith((".", "/", "@")) for v in values):
                continue  # a path or scoped name tidied by a helper (require(fix('./a')))
            shown = self.text(call)
            shown = shown if len(shown) <= 60 else shown[:57] + "…"
            where = self._sink_place(call, 0)
            if where:
                found.append((call.start_byte, call.end_byte, where[:80], shown))
                continue
            parent = call.parent
            if parent is not None and parent.type == "variable_declarator":
                ident = parent.child_by_field_name("name")
                if ident is not None and ident.type == "identifier" and \
                        self.consts.get(self.text(ident)) == call:
                    bound[self.text(ident)] = call
        if bound:
            for _, cap in self.query("(identifier) @i"):
                use = cap["i"][0]
                call_node = bound.get(self.text(use))
                if call_node is None or use.parent is None or \
                        use.parent.type == "variable_declarator":
                    continue
                where = self._sink_place(use, 0)
                if where:
                    shown = self.text(call_node)
                    shown = shown if len(shown) <= 60 else shown[:57] + "…"
                    found.append((use.start_byte, use.end_byte, where[:80], shown))
        return found[:64]

    def _transforms(self, name: str) -> bool:
        """The function's text (or that of a file function it calls) visibly transforms
        strings: reversal, splitting/joining, char codes, replace, slicing, base64."""
        node = self.functions.get(name)
        if node is None:
            return False
        text = self.text(node)
        if _TRANSFORM_SIGN.search(text):
            return True
        return any(_TRANSFORM_SIGN.search(self.text(self.functions[other]))
                   for other in set(re.findall(r"([A-Za-z_$][\w$]*)\s*\(", text))
                   & set(self.functions) if other != name)

    def _subscript_tail(self, head: bytes, node: ts.Node, depth: int) -> bytes | None:
        index = node.child_by_field_name("index")
        key = self.const(index, depth + 1) if index is not None else None
        if not isinstance(key, str):
            return None
        tail = ("." + key) if _IDENT.match(key) else f"[{quote(key)}]"
        return head + tail.encode("utf-8", "replace")

    def _render_call(self, node: ts.Node, depth: int) -> bytes | None:
        fn = node.child_by_field_name("function")
        if fn is not None and fn.type == "call_expression":
            inner_obj, inner_name = self._callee(fn)
            if inner_name == "bind" and inner_obj is not None:
                bound_head = self.render(inner_obj, depth + 1)
                if self._worth_unwrapping(inner_obj, bound_head, self._args(fn), depth):
                    return bound_head + self.splice_args(node, depth)
        obj, name = self._callee(node)
        args = self._args(node)
        if obj is None:
            if name in self.consts and self._accessor(name) is None:
                bound = self.consts[name]
                if bound.type in ("member_expression", "subscript_expression") and \
                        _root(bound, self.data) in _GLOBAL_ROOTS:
                    return self.render(bound, depth + 1) + self.splice_args(node, depth)
            return None
        head = self.render(obj, depth + 1)
        path = head.decode("utf-8", "replace")
        if path == "Reflect" and name == "apply" and len(args) >= 2:
            return self._apply(args[0], args[2] if len(args) > 2 else None, depth)
        if name in ("call", "apply") and re.fullmatch(
                r"(Function\.prototype|Object\.prototype\.\w+|[\w$.]+)\.(call|apply)", path):
            inner = path.rsplit(".", 1)[1]
            if path.endswith((".call", ".apply")) and args:  # Function.prototype.call.call(f, …)
                rest = args[1:]
                if inner == "call":
                    return self.render(args[0], depth + 1) + self._arglist(rest[1:], depth)
                return self._apply(args[0], rest[1] if len(rest) > 1 else None, depth)
        if name in ("call", "apply", "bind") and self._worth_unwrapping(obj, head, args, depth):
            if name == "call":
                return head + self._arglist(args[1:], depth)
            if name == "apply":
                return self._apply(obj, args[1] if len(args) > 1 else None, depth)
        return None

    def _worth_unwrapping(self, obj: ts.Node, rendered: bytes, args: list[ts.Node],
                          depth: int) -> bool:
        """``f.call(t, …)`` is read as ``f(…)`` when it hides something: the callee was
        obfuscated, is reached from a global, or the receiver is meaningless."""
        if rendered != self.data[obj.start_byte:obj.end_byte]:
            return True
        if _root(obj, self.data) in _GLOBAL_ROOTS - {"this"}:
            return True
        receiver = self.text(args[0]).strip() if args else "undefined"
        return receiver in _NULLISH - {"this"}

    def _apply(self, fn: ts.Node, arglist: ts.Node | None, depth: int) -> bytes:
        head = self.render(fn, depth + 1)
        if arglist is None:
            return head + b"()"
        if arglist.type == "array":
            return head + self._arglist(list(arglist.named_children), depth)
        return head + b"(..." + self.render(arglist, depth + 1) + b")"

    def _arglist(self, args: list[ts.Node], depth: int) -> bytes:
        return b"(" + b", ".join(self.render(a, depth + 1) for a in args) + b")"

    def splice_args(self, node: ts.Node, depth: int) -> bytes:
        args = node.child_by_field_name("arguments")
        if args is None:
            return b"()"
        return self.splice(args.start_byte, args.end_byte, depth, skip=None)

    def splice(self, start: int, end: int, depth: int, skip: ts.Node | None) -> bytes:
        """The original bytes of [start, end) with the candidates inside rendered."""
        out: list[bytes] = []
        pos = start
        i = bisect.bisect_left(self.starts, pos)
        while i < len(self.cands) and self.starts[i] < end:
            cand = self.cands[i]
            if cand.end_byte > end or (skip is not None and cand.id == skip.id):
                i += 1
                continue
            out.append(self.data[pos:cand.start_byte])
            out.append(self.render(cand, depth + 1))
            pos = cand.end_byte
            i = bisect.bisect_left(self.starts, pos)
        out.append(self.data[pos:end])
        return b"".join(out)

    def edits(self) -> list[tuple[int, int, bytes]]:
        found: list[tuple[int, int, bytes]] = []
        end = -1
        grown = 0
        for cand in self.cands:
            if cand.start_byte < end:
                continue
            end = cand.end_byte
            original = self.data[cand.start_byte:cand.end_byte]
            try:
                new = self.render(cand, 0)
            except LimitHit as exc:
                if str(exc) not in self.limits:
                    self.limits.append(str(exc))
                if "depth" in str(exc):  # that one expression is left as it is
                    continue
                break
            if new != original:
                new += b"\n" * original.count(b"\n")  # lines stay where they were
                grown += len(new) - len(original)
                if grown > MAX_GROWTH:
                    self.limits.append(f"view larger than the file by {MAX_GROWTH} bytes")
                    break
                found.append((cand.start_byte, cand.end_byte, new))
        return found


def _root(node: ts.Node, data: bytes) -> str:
    """The leftmost name of a member chain (``global`` in ``global.process.env``)."""
    cur: ts.Node | None = node
    for _ in range(MAX_DEPTH):
        if cur is None:
            return ""
        if cur.type in ("identifier", "this"):
            return data[cur.start_byte:cur.end_byte].decode("utf-8", "replace")
        if cur.type == "call_expression":
            fn = cur.child_by_field_name("function")
            return "require" if fn is not None and fn.text == b"require" else ""
        cur = cur.child_by_field_name("object")
    return ""


def _descendants(node: ts.Node, kind: str, limit: int) -> list[ts.Node]:
    found: list[ts.Node] = []
    stack = [node]
    seen = 0
    while stack and seen < limit * 50:
        cur = stack.pop()
        seen += 1
        if cur.type == kind:
            found.append(cur)
            if len(found) >= limit:
                break
        stack.extend(reversed(cur.children))
    return found


def normalize(data: bytes, path: str = "index.js") -> Normalized:
    """The normalised view of a JS/TS file (``text`` is ``data`` itself when nothing folds)."""
    return _normalize(data, jsast.language_kind(path))


#: Signs that folding may change what rules see. A small file showing one is normalised whole,
#: a larger one in windows around each; parsing every file would cost more than all the rules.
_SIGNS = yara.compile(source=r"""
rule signs {
  strings:
    $a = "fromCharCode"
    $b = /atob\s*\(/
    $c = /Buffer\s*\.\s*from\s*\(\s*['"`][A-Za-z0-9+\/=_-]{16}/
    $d = /Reflect\s*\.\s*apply/
    $e = /\.\s*call\s*\.\s*call/
    $f = /(\\x[0-9a-fA-F]{2}){3}/
    $g = /(\\u[0-9a-fA-F]{4}){3}/
    $h = /(global|globalThis|window|self|process)\s*\[\s*[^\]0-9\s]/
    $i = /require\s*\(\s*[^'"`)\s]/
    $j = /require\s*\(\s*['"`][^'"`\n]{0,40}['"`]\s*\+/
    $k = /\[\s*['"`][^'"`\]\n]{0,20}['"`]\s*\+/
    $l = /\.\s*(call|apply)\s*\(\s*(null|void\s+0|global)[^\w$]/
  condition: any of them
}
rule small {
  // an escape counts only when it spells a printable ASCII character other than a quote or
  // a backslash (a name, a path, a command hidden one character at a time); escapes of
  // control, non-ASCII or quote characters are how ordinary code writes those
  strings:
    $a = /['"`]\s*\+\s*['"`]/
    $b = /\\x(2[013-689a-fA-F]|[34][0-9a-fA-F]|5[0-9abdefABDEF]|6[1-9a-fA-F]|7[0-9a-eA-E])/
    $b2 = /\\u00(2[013-689a-fA-F]|[34][0-9a-fA-F]|5[0-9abdefABDEF]|6[1-9a-fA-F]|7[0-9a-eA-E])/
    $b3 = /\\u\{0{0,4}(2[013-689a-fA-F]|[34][0-9a-fA-F]|5[0-9abdefABDEF]|6[1-9a-fA-F]|7[0-9a-eA-E])\}/
    $b4 = /\\[0-7]{3}/
    $c = /\$\{\s*['"]/
    $d = /\.\s*reverse\s*\(\s*\)\s*\.\s*join/
    $e = /\.\s*(call|apply|bind)\s*\(\s*(null|undefined|void\s+0|global|globalThis|window)[^\w$]/
  condition: any of them
}
rule dense {
  strings:
    $x = /_0x[0-9a-fA-F]{4,6}[^0-9a-fA-F]/
  condition: #x >= 50
}
""")
#: Files up to this size are normalised whole (also on the weaker ``small`` signs); larger
#: ones in windows around the signs (whole, up to MAX_INPUT, when machine-obfuscated).
FULL_BYTES = 64 * 1024
WINDOW_RADIUS = 2048
MAX_WINDOWS = 64


_Sink = tuple[int, int, str, str]


def _fold(data: bytes, lang: str) -> tuple[list[tuple[int, int, bytes]], list[str], int,
                                           list[_Sink], list[_Sink]]:
    folder = _Folder(data, jsast.parse(data, lang), lang)
    try:
        folder.collect_bindings()
        folder.collect_candidates()
    except LimitHit as exc:
        return [], [str(exc)], folder.folds, [], _undecoded(folder)
    except RecursionError:  # a backstop: every descent is bounded, but never a crash
        return [], ["expression nested too deeply to normalise"], folder.folds, [], []
    edits = folder.edits()
    return edits, folder.limits, folder.folds, folder.sinks, _undecoded(folder)


def _undecoded(folder: _Folder) -> list[_Sink]:
    """Decoder calls reaching a sink that were not decoded (none when that search itself hits
    a bound, which is then named among the limits)."""
    if not folder.functions:
        return []
    try:
        return folder.undecoded_sinks()
    except (LimitHit, RecursionError) as exc:
        folder.limits.append(f"decoder sinks not searched: {exc}"[:80])
        return []


@lru_cache(maxsize=4)
def _normalize(data: bytes, lang: str) -> Normalized:
    edits: list[tuple[int, int, bytes]] = []
    limits: list[str] = []
    sinks: list[_Sink] = []
    hidden: list[_Sink] = []
    folds = 0
    matched = {m.rule: m for m in _SIGNS.match(data=data, timeout=30)}
    small = len(data) <= FULL_BYTES
    if "signs" not in matched and "dense" not in matched and not (small and "small" in matched):
        return Normalized(data)
    if small or ("dense" in matched and len(data) <= MAX_INPUT):
        edits, limits, folds, sinks, hidden = _fold(data, lang)
    else:
        offsets = sorted({i.offset for s in matched["signs"].strings for i in s.instances}
                         if "signs" in matched else set())[:4096]
        windows: list[tuple[int, int]] = []
        for off in offsets:
            lo, hi = max(0, off - WINDOW_RADIUS), min(len(data), off + WINDOW_RADIUS)
            if windows and lo <= windows[-1][1]:
                windows[-1] = (windows[-1][0], max(windows[-1][1], hi))
            else:
                windows.append((lo, hi))
        if len(windows) > MAX_WINDOWS:
            limits.append(f"more than {MAX_WINDOWS} places to normalise in a large file")
        for lo, hi in windows[:MAX_WINDOWS]:
            got, hit, n, sunk, unseen = _fold(data[lo:hi], lang)
            hidden.extend((a + lo, b + lo, where, value) for a, b, where, value in unseen)
            edits.extend((a + lo, b + lo, new) for a, b, new in got)
            sinks.extend((a + lo, b + lo, where, value) for a, b, where, value in sunk)
            limits.extend(hit)
            folds += n
    if not edits:
        return Normalized(data, limits=limits, folds=folds, decoder_sinks=sinks,
                          undecoded_sinks=hidden)
    parts: list[bytes] = []
    spans: list[tuple[int, int, int, int]] = []
    pos = 0
    size = 0
    for start, end, new in edits:
        parts.append(data[pos:start])
        size += start - pos
        spans.append((size, size + len(new), start, end))
        parts.append(new)
        size += len(new)
        pos = end
    parts.append(data[pos:])
    return Normalized(b"".join(parts), spans, limits, folds, sinks, hidden)
