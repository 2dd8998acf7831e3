"""A bounded partial evaluator for small, pure string decoders written in the package itself.

Droppers hide names and code behind their own decoders: XOR with a key, reversed strings, a
char-code shift, ``s.split('').map(c => String.fromCharCode(c.charCodeAt(0) - 3)).join('')``.
The normaliser (analysis/normalize.py) asks this module for the value of a call of such a
function on constant arguments, so that rules see ``require("child_process")`` and not
``require(d('ssecorp_dlihc'))``.

This interprets hostile code, so it is built to be side-effect free and bounded by
construction, never by hope:

- It walks tree-sitter nodes itself; nothing is handed to a JavaScript engine, ``eval`` or the
  host. Values are Python strings, floats, booleans, lists and closures over the walked nodes.
- Only a whitelist is understood: literals, locals and parameters, the arithmetic, bitwise and
  comparison operators, ``if``/``for``/``for…of``/``while``/``return``/``break``/``continue``,
  functions declared in the file, arrow callbacks, and the pure methods listed in
  ``STRING_METHODS``/``ARRAY_METHODS`` plus ``String.fromCharCode``, ``parseInt``, ``Math.*``
  and ``atob``. Anything else (a global, a property other than ``length``, ``this``, ``new``,
  a regular expression, an object literal) stops the evaluation: the call is left unfolded.
- Every node visited costs a step (``MAX_STEPS`` per evaluation, and the caller's file-wide
  budget); strings are at most ``MAX_STRING`` characters and arrays ``MAX_ARRAY`` elements
  (checked before they are built); calls nest at most ``MAX_CALL_DEPTH`` deep and expressions
  ``MAX_EXPR_DEPTH``. Hitting a bound gives up on that one call.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Union

import tree_sitter as ts

#: Steps of one evaluation: a node visited is one step, and an operation that touches a
#: string or an array costs one more step per BYTES_PER_STEP characters or elements it reads
#: or builds (reversing a 64 KiB string costs 1,024 steps, not one).
MAX_STEPS = 50_000
BYTES_PER_STEP = 64
#: Length of any string built, elements of any array.
MAX_STRING = 64 * 1024
MAX_ARRAY = 64 * 1024
#: Nested calls of the file's own functions (recursion), nested expressions in one call, and
#: nested statements and expressions of all calls together (what the Python stack holds).
MAX_CALL_DEPTH = 16
MAX_EXPR_DEPTH = 64
MAX_NESTING = 160
#: Statements of a function judged small enough to be a decoder.
MAX_FUNCTION_BYTES = 4096


class Undefined:
    """JavaScript's ``undefined`` (``None`` is ``null``)."""

    _instance: Undefined | None = None

    def __new__(cls) -> Undefined:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "undefined"


UNDEFINED = Undefined()


@dataclass(eq=False)
class Closure:
    params: list[str]
    body: ts.Node
    env: Env
    data: bytes


JsValue = Union[str, float, bool, None, Undefined, list["JsValue"], Closure]  # noqa: UP007


@dataclass(eq=False)
class Env:
    names: dict[str, JsValue] = field(default_factory=dict)
    parent: Env | None = None

    def lookup(self, name: str) -> tuple[bool, JsValue]:
        env: Env | None = self
        while env is not None:
            if name in env.names:
                return True, env.names[name]
            env = env.parent
        return False, None

    def assign(self, name: str, value: JsValue) -> bool:
        env: Env | None = self
        while env is not None:
            if name in env.names:
                env.names[name] = value
                return True
            env = env.parent
        return False


class GiveUp(Exception):
    """Something outside the whitelist, or a bound: the call is not folded."""


class _Return(Exception):
    def __init__(self, value: JsValue) -> None:
        self.value = value


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


#: A name the evaluator does not know: the caller says what it is (a constant of the file, a
#: function of the file as (parameters, body)) or None.
Resolver = Callable[[str], "JsValue | None"]

STRING_METHODS = {"charCodeAt", "charAt", "split", "slice", "substring", "substr", "indexOf",
                  "toLowerCase", "toUpperCase", "trim", "concat", "replace", "repeat",
                  "toString", "codePointAt", "padStart", "padEnd", "at"}
ARRAY_METHODS = {"join", "reverse", "map", "push", "slice", "concat", "indexOf", "toString",
                 "at", "filter"}
MATH: dict[str, Callable[[float], float]] = {
    "floor": lambda x: float(math.floor(x)), "ceil": lambda x: float(math.ceil(x)),
    "abs": abs, "round": lambda x: float(math.floor(x + 0.5))}
FUNCTION_TYPES = ("function_declaration", "function_expression", "function", "arrow_function")


def _int32(x: float) -> int:
    if math.isnan(x) or math.isinf(x):
        return 0
    n = int(x) & 0xFFFFFFFF
    return n - (1 << 32) if n >= 1 << 31 else n


def _uint32(x: float) -> int:
    return 0 if math.isnan(x) or math.isinf(x) else int(x) & 0xFFFFFFFF


def to_number(v: JsValue) -> float:
    if isinstance(v, bool):
        return 1.0 if v else 0.0
    if isinstance(v, float):
        return v
    if v is None:
        return 0.0
    if isinstance(v, str):
        t = v.strip()
        if not t:
            return 0.0
        try:
            return float(int(t, 16)) if t.lower().startswith("0x") else float(t)
        except ValueError:
            return math.nan
    if isinstance(v, list):
        return to_number(to_string(v)) if len(v) <= 1 else math.nan
    return math.nan


def to_string(v: JsValue) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        if math.isnan(v):
            return "NaN"
        if math.isinf(v):
            return "Infinity" if v > 0 else "-Infinity"
        return str(int(v)) if v == int(v) and abs(v) < 1e21 else repr(v)
    if v is None:
        return "null"
    if isinstance(v, Undefined):
        return "undefined"
    if isinstance(v, list):
        return ",".join("" if (x is None or isinstance(x, Undefined)) else to_string(x)
                        for x in v)
    raise GiveUp("function to string")


def truthy(v: JsValue) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, float):
        return not (v == 0 or math.isnan(v))
    if isinstance(v, str):
        return v != ""
    return not (v is None or isinstance(v, Undefined))


def _strict_equal(a: JsValue, b: JsValue) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, (list, Closure)):
        return a is b
    return a == b


def _loose_equal(a: JsValue, b: JsValue) -> bool:
    nullish = (None, UNDEFINED)
    if a in nullish or b in nullish:
        return a in nullish and b in nullish
    if isinstance(a, (str, float, bool)) and isinstance(b, (str, float, bool)) and \
            type(a) is not type(b):
        return to_number(a) == to_number(b)
    return _strict_equal(a, b)


def _radix_int(text: str, radix: int) -> float:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"[:radix]
    t = text.strip().lower()
    sign = -1.0 if t.startswith("-") else 1.0
    t = t.lstrip("+-")
    if radix == 16 and t.startswith("0x"):
        t = t[2:]
    n = 0
    seen = False
    for ch in t[:64]:
        d = digits.find(ch)
        if d < 0:
            break
        n = n * radix + d
        seen = True
    return sign * float(n) if seen else math.nan


class Evaluator:
    """Evaluates one call of a file function (or one expression) on constant values."""

    def __init__(self, data: bytes, resolve: Resolver, steps: int = MAX_STEPS) -> None:
        self.data = data
        self.resolve = resolve
        self.steps = steps
        self.calls = 0
        self.nesting = 0

    # -- bounds -------------------------------------------------------------------------------
    def tick(self) -> None:
        self.steps -= 1
        if self.steps < 0:
            raise GiveUp("step budget")

    def charge(self, touched: int) -> None:
        """The cost of reading or building ``touched`` characters or elements."""
        self.steps -= touched // BYTES_PER_STEP
        if self.steps < 0:
            raise GiveUp("step budget")

    def _str(self, value: str) -> str:
        if len(value) > MAX_STRING:
            raise GiveUp("string bound")
        self.charge(len(value))
        return value

    def _arr(self, value: list[JsValue]) -> list[JsValue]:
        if len(value) > MAX_ARRAY:
            raise GiveUp("array bound")
        self.charge(len(value))
        return value

    def text(self, node: ts.Node) -> str:
        return self.data[node.start_byte:node.end_byte].decode("utf-8", "replace")

    # -- functions ----------------------------------------------------------------------------
    def closure(self, node: ts.Node, env: Env) -> Closure:
        if node.end_byte - node.start_byte > MAX_FUNCTION_BYTES:
            raise GiveUp("function too large")
        params_node = node.child_by_field_name("parameters") or node.child_by_field_name(
            "parameter")
        if params_node is None:
            params: list[str] = []
        elif params_node.type == "identifier":
            params = [self.text(params_node)]
        else:
            params = []
            for p in params_node.named_children:
                if p.type != "identifier":
                    raise GiveUp("parameter pattern")
                params.append(self.text(p))
        if self.text(node).startswith("async") or node.child_by_field_name("body") is None:
            raise GiveUp("not a plain function")
        body = node.child_by_field_name("body")
        assert body is not None
        return Closure(params, body, env, self.data)

    def call(self, fn: JsValue, args: list[JsValue], depth: int) -> JsValue:
        if not isinstance(fn, Closure):
            raise GiveUp("not a function")
        self.calls += 1
        if depth > MAX_CALL_DEPTH:
            raise GiveUp("call depth")
        env = Env({p: (args[i] if i < len(args) else UNDEFINED)
                   for i, p in enumerate(fn.params)}, fn.env)
        if fn.body.type != "statement_block":
            return self.expr(fn.body, env, depth + 1, 0)
        try:
            self.block(fn.body, env, depth + 1)
        except _Return as ret:
            return ret.value
        except (_Break, _Continue):
            raise GiveUp("break outside a loop") from None
        return UNDEFINED

    # -- statements ---------------------------------------------------------------------------
    def block(self, node: ts.Node, env: Env, depth: int) -> None:
        for child in node.named_children:
            self.stmt(child, env, depth)

    def stmt(self, node: ts.Node, env: Env, depth: int) -> None:
        self.tick()
        self.nesting += 1
        try:
            if self.nesting > MAX_NESTING:
                raise GiveUp("nesting")
            self._stmt(node, env, depth)
        finally:
            self.nesting -= 1

    def _stmt(self, node: ts.Node, env: Env, depth: int) -> None:
        kind = node.type
        if kind == "comment" or kind == "empty_statement":
            return
        if kind == "expression_statement":
            for child in node.named_children:
                self.expr(child, env, depth, 0)
            return
        if kind in ("lexical_declaration", "variable_declaration"):
            for decl in node.named_children:
                if decl.type != "variable_declarator":
                    continue
                name = decl.child_by_field_name("name")
                if name is None or name.type != "identifier":
                    raise GiveUp("declaration pattern")
                value = decl.child_by_field_name("value")
                env.names[self.text(name)] = (self.expr(value, env, depth, 0)
                                              if value is not None else UNDEFINED)
            return
        if kind == "return_statement":
            value = node.named_children[0] if node.named_children else None
            raise _Return(self.expr(value, env, depth, 0) if value is not None else UNDEFINED)
        if kind == "statement_block":
            self.block(node, env, depth)
            return
        if kind == "if_statement":
            cond = node.child_by_field_name("condition")
            then, other = node.child_by_field_name("consequence"), node.child_by_field_name(
                "alternative")
            if cond is None or then is None:
                raise GiveUp("if")
            if truthy(self.expr(cond, env, depth, 0)):
                self.stmt(then, env, depth)
            elif other is not None:
                for child in other.named_children:
                    self.stmt(child, env, depth)
            return
        if kind == "else_clause":
            for child in node.named_children:
                self.stmt(child, env, depth)
            return
        if kind == "break_statement" and not node.named_children:
            raise _Break()
        if kind == "continue_statement" and not node.named_children:
            raise _Continue()
        if kind == "for_statement":
            self._for(node, env, depth)
            return
        if kind == "for_in_statement":
            self._for_of(node, env, depth)
            return
        if kind == "while_statement":
            cond = node.child_by_field_name("condition")
            body = node.child_by_field_name("body")
            if cond is None or body is None:
                raise GiveUp("while")
            while truthy(self.expr(cond, env, depth, 0)):
                if self._loop_body(body, env, depth):
                    break
            return
        raise GiveUp(f"statement {kind}")

    def _loop_body(self, body: ts.Node, env: Env, depth: int) -> bool:
        """Runs one iteration; True when the loop breaks."""
        try:
            self.stmt(body, env, depth)
        except _Break:
            return True
        except _Continue:
            return False
        return False

    def _for(self, node: ts.Node, env: Env, depth: int) -> None:
        init = node.child_by_field_name("initializer")
        cond = node.child_by_field_name("condition")
        step = node.child_by_field_name("increment")
        body = node.child_by_field_name("body")
        if body is None:
            raise GiveUp("for")
        if init is not None:
            if init.type in ("lexical_declaration", "variable_declaration",
                             "expression_statement"):
                self.stmt(init, env, depth)
            elif init.type != "empty_statement":
                self.expr(init, env, depth, 0)
        if cond is not None and cond.type == "expression_statement":
            cond = cond.named_children[0] if cond.named_children else None
        elif cond is not None and cond.type == "empty_statement":
            cond = None
        while cond is None or truthy(self.expr(cond, env, depth, 0)):
            self.tick()
            if self._loop_body(body, env, depth):
                break
            if step is not None:
                self.expr(step, env, depth, 0)

    def _for_of(self, node: ts.Node, env: Env, depth: int) -> None:
        left, right = node.child_by_field_name("left"), node.child_by_field_name("right")
        body = node.child_by_field_name("body")
        op = node.child_by_field_name("operator")
        if left is None or right is None or body is None or left.type != "identifier" or \
                (op is not None and self.text(op) != "of"):
            raise GiveUp("for-in")
        items = self.expr(right, env, depth, 0)
        if isinstance(items, str):
            seq: list[JsValue] = list(items)
        elif isinstance(items, list):
            seq = list(items)
        else:
            raise GiveUp("for-of over a non-iterable")
        name = self.text(left)
        for item in seq:
            self.tick()
            env.names[name] = item
            if self._loop_body(body, env, depth):
                break

    # -- expressions --------------------------------------------------------------------------
    def expr(self, node: ts.Node, env: Env, depth: int, nest: int) -> JsValue:
        self.tick()
        if nest > MAX_EXPR_DEPTH:
            raise GiveUp("expression depth")
        self.nesting += 1
        try:
            if self.nesting > MAX_NESTING:
                raise GiveUp("nesting")
            return self._expr(node, env, depth, nest)
        finally:
            self.nesting -= 1

    def _expr(self, node: ts.Node, env: Env, depth: int, nest: int) -> JsValue:
        kind = node.type
        n = nest + 1
        if kind == "string":
            from chainwatch.analysis.normalize import unescape_js  # one unescaper

            return unescape_js(self.text(node)[1:-1])
        if kind == "number":
            from chainwatch.analysis.normalize import js_number

            number = js_number(self.text(node))
            if number is None:
                raise GiveUp("number")
            return number
        if kind == "true":
            return True
        if kind == "false":
            return False
        if kind == "null":
            return None
        if kind == "undefined":
            return UNDEFINED
        if kind == "template_string":
            from chainwatch.analysis.normalize import unescape_js

            parts: list[str] = []
            for child in node.children:
                if child.type == "template_substitution":
                    inner = child.named_children
                    if len(inner) != 1:
                        raise GiveUp("template")
                    parts.append(to_string(self.expr(inner[0], env, depth, n)))
                elif child.type in ("string_fragment", "escape_sequence"):
                    parts.append(unescape_js(self.text(child)))
            return self._str("".join(parts))
        if kind == "parenthesized_expression" and len(node.named_children) == 1:
            return self.expr(node.named_children[0], env, depth, n)
        if kind == "sequence_expression":
            last: JsValue = UNDEFINED
            for child in node.named_children:
                last = self.expr(child, env, depth, n)
            return last
        if kind == "identifier":
            return self._name(self.text(node), env)
        if kind == "array":
            items: list[JsValue] = []
            for child in node.named_children:
                if child.type == "spread_element":
                    spread = self.expr(child.named_children[0], env, depth, n) \
                        if child.named_children else None
                    if isinstance(spread, (str, list)):
                        items.extend(list(spread))
                    else:
                        raise GiveUp("spread")
                else:
                    items.append(self.expr(child, env, depth, n))
                self._arr(items)
            return items
        if kind in ("arrow_function", "function_expression", "function"):
            return self.closure(node, env)
        if kind == "binary_expression":
            return self._binary(node, env, depth, n)
        if kind == "unary_expression":
            arg = node.child_by_field_name("argument")
            op = node.child_by_field_name("operator")
            if arg is None or op is None:
                raise GiveUp("unary")
            o = self.text(op)
            v = self.expr(arg, env, depth, n)
            if o == "!":
                return not truthy(v)
            if o == "-":
                return -to_number(v)
            if o == "+":
                return to_number(v)
            if o == "~":
                return float(~_int32(to_number(v)))
            if o == "void":
                return UNDEFINED
            if o == "typeof" and isinstance(v, (str, float, bool)):
                return {str: "string", float: "number", bool: "boolean"}[type(v)]
            raise GiveUp(f"unary {o}")
        if kind == "ternary_expression":
            cond = node.child_by_field_name("condition")
            a, b = node.child_by_field_name("consequence"), node.child_by_field_name(
                "alternative")
            if cond is None or a is None or b is None:
                raise GiveUp("ternary")
            return self.expr(a if truthy(self.expr(cond, env, depth, n)) else b, env, depth, n)
        if kind in ("assignment_expression", "augmented_assignment_expression"):
            return self._assign(node, env, depth, n)
        if kind == "update_expression":
            arg = node.child_by_field_name("argument")
            op = node.child_by_field_name("operator")
            if arg is None or op is None or arg.type != "identifier":
                raise GiveUp("update")
            name = self.text(arg)
            old = to_number(self._name(name, env))
            new = old + (1 if self.text(op) == "++" else -1)
            if not env.assign(name, new):
                raise GiveUp("update of an unknown name")
            return new if self.text(node).startswith(("++", "--")) else old
        if kind == "member_expression":
            obj, prop = node.child_by_field_name("object"), node.child_by_field_name("property")
            if obj is None or prop is None or self.text(prop) != "length":
                raise GiveUp("member")
            base = self.expr(obj, env, depth, n)
            if isinstance(base, (str, list)):
                return float(len(base))
            raise GiveUp("length of a non-sequence")
        if kind == "subscript_expression":
            obj, index = node.child_by_field_name("object"), node.child_by_field_name("index")
            if obj is None or index is None:
                raise GiveUp("subscript")
            return self._index(self.expr(obj, env, depth, n), self.expr(index, env, depth, n))
        if kind == "call_expression":
            return self._call(node, env, depth, n)
        raise GiveUp(f"expression {kind}")

    def _name(self, name: str, env: Env) -> JsValue:
        found, value = env.lookup(name)
        if found:
            return value
        if name == "undefined":
            return UNDEFINED
        if name in ("NaN", "Infinity"):
            return math.nan if name == "NaN" else math.inf
        value = self.resolve(name)
        if value is None:
            raise GiveUp(f"unknown name {name}")
        return value

    @staticmethod
    def _index(base: JsValue, key: JsValue) -> JsValue:
        if isinstance(key, str) and key == "length" and isinstance(base, (str, list)):
            return float(len(base))
        if not isinstance(key, float) or not isinstance(base, (str, list)):
            raise GiveUp("index")
        if key != int(key) or not 0 <= key < len(base):
            return UNDEFINED
        return base[int(key)]

    def _binary(self, node: ts.Node, env: Env, depth: int, n: int) -> JsValue:
        left, right = node.child_by_field_name("left"), node.child_by_field_name("right")
        op_node = node.child_by_field_name("operator")
        if left is None or right is None or op_node is None:
            raise GiveUp("binary")
        op = self.text(op_node)
        a = self.expr(left, env, depth, n)
        if op == "&&":
            return self.expr(right, env, depth, n) if truthy(a) else a
        if op == "||":
            return a if truthy(a) else self.expr(right, env, depth, n)
        if op == "??":
            return self.expr(right, env, depth, n) if a is None or a is UNDEFINED else a
        b = self.expr(right, env, depth, n)
        return self.operate(op, a, b)

    def operate(self, op: str, a: JsValue, b: JsValue) -> JsValue:
        if isinstance(a, Closure) or isinstance(b, Closure):
            raise GiveUp("operator on a function")
        if op == "+":
            if isinstance(a, (str, list)) or isinstance(b, (str, list)):
                sa, sb = to_string(a), to_string(b)
                if len(sa) + len(sb) > MAX_STRING:
                    raise GiveUp("string bound")
                self.charge(len(sa) + len(sb))
                return sa + sb
            return to_number(a) + to_number(b)
        if op in ("===", "!=="):
            return _strict_equal(a, b) == (op == "===")
        if op in ("==", "!="):
            return _loose_equal(a, b) == (op == "==")
        if op in ("<", ">", "<=", ">="):
            if isinstance(a, str) and isinstance(b, str):
                x: float | str = a
                y: float | str = b
            else:
                x, y = to_number(a), to_number(b)
                if math.isnan(x) or math.isnan(y):
                    return False
            return {"<": x < y, ">": x > y, "<=": x <= y, ">=": x >= y}[op]  # type: ignore[operator]
        x, y = to_number(a), to_number(b)
        if op == "-":
            return x - y
        if op == "*":
            return x * y
        if op == "/":
            if y == 0:
                return math.nan if x == 0 or math.isnan(x) else math.copysign(math.inf, x) * (
                    math.copysign(1, y))
            return x / y
        if op == "%":
            if y == 0 or math.isinf(x) or math.isnan(x) or math.isnan(y):
                return math.nan
            return math.fmod(x, y)
        if op == "**":
            if abs(y) > 64:
                raise GiveUp("exponent")
            return float(x ** y)
        if op in ("^", "&", "|"):
            i, j = _int32(x), _int32(y)
            r = i ^ j if op == "^" else i & j if op == "&" else i | j
            return float(_int32(float(r)))
        if op == "<<":
            return float(_int32(float(_int32(x) << (_uint32(y) & 31))))
        if op == ">>":
            return float(_int32(x) >> (_uint32(y) & 31))
        if op == ">>>":
            return float(_uint32(x) >> (_uint32(y) & 31))
        raise GiveUp(f"operator {op}")

    def _assign(self, node: ts.Node, env: Env, depth: int, n: int) -> JsValue:
        left, right = node.child_by_field_name("left"), node.child_by_field_name("right")
        if left is None or right is None:
            raise GiveUp("assignment")
        value = self.expr(right, env, depth, n)
        if node.type == "augmented_assignment_expression":
            op_node = node.child_by_field_name("operator")
            op = self.text(op_node)[:-1] if op_node is not None else ""
            if op in ("&&", "||", "??"):
                raise GiveUp("logical assignment")
            current = self.expr(left, env, depth, n)
            value = self.operate(op, current, value)
        if left.type == "identifier":
            if not env.assign(self.text(left), value):
                raise GiveUp("assignment to an unknown name")
            return value
        if left.type == "subscript_expression":
            obj, index = left.child_by_field_name("object"), left.child_by_field_name("index")
            if obj is None or index is None:
                raise GiveUp("subscript assignment")
            target = self.expr(obj, env, depth, n)
            key = self.expr(index, env, depth, n)
            if not isinstance(target, list) or not isinstance(key, float) or key != int(key) \
                    or not 0 <= key <= len(target) or key >= MAX_ARRAY:
                raise GiveUp("subscript assignment")
            if key == len(target):
                target.append(value)
            else:
                target[int(key)] = value
            return value
        raise GiveUp("assignment target")

    # -- calls --------------------------------------------------------------------------------
    def _args(self, node: ts.Node, env: Env, depth: int, n: int) -> list[JsValue]:
        args = node.child_by_field_name("arguments")
        if args is None:
            return []
        out: list[JsValue] = []
        for a in args.named_children:
            if a.type == "comment":
                continue
            if a.type == "spread_element":
                inner = self.expr(a.named_children[0], env, depth, n) if a.named_children else None
                if not isinstance(inner, list):
                    raise GiveUp("spread")
                out.extend(inner)
            else:
                out.append(self.expr(a, env, depth, n))
        return self._arr(out)

    def _call(self, node: ts.Node, env: Env, depth: int, n: int) -> JsValue:
        fn = node.child_by_field_name("function")
        if fn is None:
            raise GiveUp("call")
        if fn.type == "identifier":
            name = self.text(fn)
            found, value = env.lookup(name)
            if not found and name in ("parseInt", "String", "Number", "atob", "parseFloat"):
                return self._global(name, self._args(node, env, depth, n))
            callee = value if found else self._name(name, env)
            return self.call(callee, self._args(node, env, depth, n), depth + 1)
        if fn.type != "member_expression":
            raise GiveUp("callee")
        obj, prop = fn.child_by_field_name("object"), fn.child_by_field_name("property")
        if obj is None or prop is None:
            raise GiveUp("callee")
        method = self.text(prop)
        owner = self.text(obj)
        if owner == "String" and method == "fromCharCode" and not env.lookup("String")[0]:
            codes = self._args(node, env, depth, n)
            return self._str("".join(chr(_uint32(to_number(c)) & 0xFFFF) for c in codes))
        if owner == "Math" and method in MATH and not env.lookup("Math")[0]:
            args = self._args(node, env, depth, n)
            x = to_number(args[0]) if args else math.nan
            return math.nan if math.isnan(x) or math.isinf(x) else float(MATH[method](x))
        if owner == "Math" and method in ("min", "max") and not env.lookup("Math")[0]:
            nums = [to_number(a) for a in self._args(node, env, depth, n)]
            if any(math.isnan(x) for x in nums):
                return math.nan
            return (min if method == "min" else max)(nums) if nums else (
                math.inf if method == "min" else -math.inf)
        base = self.expr(obj, env, depth, n)
        args = self._args(node, env, depth, n)
        if isinstance(base, str):
            return self._string_method(base, method, args, depth)
        if isinstance(base, list):
            return self._array_method(base, method, args, depth)
        if isinstance(base, float) and method == "toString":
            radix = int(to_number(args[0])) if args else 10
            return _number_to_string(base, radix)
        raise GiveUp(f"method {method}")

    def _global(self, name: str, args: list[JsValue]) -> JsValue:
        first = args[0] if args else UNDEFINED
        if name == "String":
            return to_string(first) if args else ""
        if name in ("Number", "parseFloat"):
            return to_number(first)
        if name == "parseInt":
            radix = int(to_number(args[1])) if len(args) > 1 else 10
            if not 2 <= radix <= 36:
                radix = 10
            return _radix_int(to_string(first), radix)
        if name == "atob":
            text = to_string(first)
            if len(text) > MAX_STRING:
                raise GiveUp("string bound")
            self.charge(len(text))
            try:
                raw = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
            except (ValueError, binascii.Error):
                raise GiveUp("atob") from None
            return raw.decode("latin-1")
        raise GiveUp(name)

    def _string_method(self, s: str, method: str, args: list[JsValue], depth: int) -> JsValue:
        if method not in STRING_METHODS:
            raise GiveUp(f"string method {method}")
        if method not in ("charCodeAt", "codePointAt", "charAt", "at"):
            self.charge(len(s))  # each of these reads the whole string
        a0 = args[0] if args else UNDEFINED
        if method in ("charCodeAt", "codePointAt"):
            i = int(to_number(a0)) if args else 0
            return float(ord(s[i])) if 0 <= i < len(s) else math.nan
        if method in ("charAt", "at"):
            i = int(to_number(a0)) if args else 0
            if method == "at" and i < 0:
                i += len(s)
            return s[i] if 0 <= i < len(s) else ("" if method == "charAt" else UNDEFINED)
        if method == "split":
            if not args or a0 is UNDEFINED:
                return [s]
            if not isinstance(a0, str):
                raise GiveUp("split by a non-string")
            parts: list[JsValue] = list(list(s) if a0 == "" else s.split(a0))
            return self._arr(parts)
        if method in ("slice", "substring", "substr"):
            return _slice_string(s, method, [to_number(a) for a in args])
        if method == "indexOf":
            return float(s.find(to_string(a0)))
        if method == "toLowerCase":
            return s.lower()
        if method == "toUpperCase":
            return s.upper()
        if method == "trim":
            return s.strip()
        if method == "toString":
            return s
        if method == "concat":
            return self._str(s + "".join(to_string(a) for a in args))
        if method == "replace":
            if len(args) != 2 or not all(isinstance(a, str) for a in args):
                raise GiveUp("replace with a pattern or a function")
            return self._str(s.replace(to_string(args[0]), to_string(args[1]), 1))
        if method == "repeat":
            count = to_number(a0)
            if math.isnan(count) or count < 0 or len(s) * count > MAX_STRING:
                raise GiveUp("string bound")
            return s * int(count)
        if method in ("padStart", "padEnd"):
            width = to_number(a0)
            fill = to_string(args[1]) if len(args) > 1 else " "
            if math.isnan(width) or width > MAX_STRING:
                raise GiveUp("string bound")
            if width <= len(s) or not fill:
                return s
            pad = (fill * (int(width) - len(s)))[:int(width) - len(s)]
            return pad + s if method == "padStart" else s + pad
        raise GiveUp(method)

    def _array_method(self, a: list[JsValue], method: str, args: list[JsValue],
                      depth: int) -> JsValue:
        if method not in ARRAY_METHODS:
            raise GiveUp(f"array method {method}")
        if method not in ("at", "push"):
            self.charge(len(a))
        if method == "join":
            sep = to_string(args[0]) if args and args[0] is not UNDEFINED else ","
            parts = ["" if (x is None or x is UNDEFINED) else to_string(x) for x in a]
            total = sum(map(len, parts)) + len(sep) * max(0, len(parts) - 1)
            if total > MAX_STRING:
                raise GiveUp("string bound")
            self.charge(total + len(parts))
            return sep.join(parts)
        if method == "toString":
            return self._str(to_string(a))
        if method == "reverse":
            a.reverse()
            return a
        if method in ("map", "filter"):
            fn = args[0] if args else None
            out: list[JsValue] = []
            for i, item in enumerate(list(a)):
                self.tick()
                value = self.call(fn, [item, float(i)], depth + 1)
                if method == "map":
                    out.append(value)
                elif truthy(value):
                    out.append(item)
            return out
        if method == "push":
            a.extend(args)
            self._arr(a)
            return float(len(a))
        if method == "slice":
            nums = [to_number(x) for x in args]
            start = _clamp(nums[0], len(a)) if nums else 0
            end = _clamp(nums[1], len(a)) if len(nums) > 1 else len(a)
            return a[start:end]
        if method == "concat":
            out = list(a)
            for x in args:
                out.extend(x if isinstance(x, list) else [x])
                self._arr(out)
            return out
        if method == "indexOf":
            for i, x in enumerate(a):
                if _strict_equal(x, args[0] if args else UNDEFINED):
                    return float(i)
            return -1.0
        if method == "at":
            i = int(to_number(args[0])) if args else 0
            i = i + len(a) if i < 0 else i
            return a[i] if 0 <= i < len(a) else UNDEFINED
        raise GiveUp(method)


def _clamp(x: float, length: int) -> int:
    if math.isnan(x):
        return 0
    i = int(x)
    if i < 0:
        return max(0, length + i)
    return min(i, length)


def _slice_string(s: str, method: str, nums: list[float]) -> str:
    if method == "slice":
        start = _clamp(nums[0], len(s)) if nums else 0
        end = _clamp(nums[1], len(s)) if len(nums) > 1 else len(s)
        return s[start:end]
    if method == "substring":
        def fix(x: float) -> int:
            return 0 if math.isnan(x) else max(0, min(int(x), len(s)))
        start = fix(nums[0]) if nums else 0
        end = fix(nums[1]) if len(nums) > 1 else len(s)
        return s[min(start, end):max(start, end)]
    start = _clamp(nums[0], len(s)) if nums else 0
    length = int(nums[1]) if len(nums) > 1 and not math.isnan(nums[1]) else len(s)
    return s[start:start + max(0, length)]


def _number_to_string(x: float, radix: int) -> str:
    if radix == 10 or math.isnan(x) or math.isinf(x) or x != int(x):
        return to_string(x)
    if not 2 <= radix <= 36:
        raise GiveUp("radix")
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    n, out = abs(int(x)), ""
    while True:
        n, r = divmod(n, radix)
        out = digits[r] + out
        if n == 0:
            break
    return ("-" if x < 0 else "") + out

