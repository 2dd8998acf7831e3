"""Browser and wallet API hooks, however they are written (tree-sitter, nothing executed).

A page's network and wallet APIs can be replaced by assignment (``window.fetch = …``), by
``Object.defineProperty`` / ``defineProperties`` / ``Object.assign`` / ``Reflect.defineProperty``,
through an alias (``var e = window.ethereum; e.request = …``, ``var P = XMLHttpRequest.prototype``)
or a constant key (``var k = 'fetch'; window[k] = …``). This module finds all of them; the rules
in rules/browser.yml report them.

A fetch *polyfill* is not a hook: setting ``fetch`` only when it is missing (inside an
``if (!globalThis.fetch)`` / ``typeof … === 'undefined'`` test, or ``fetch = fetch || impl``), or
installing a named implementation without ever reading the page's own fetch, is left alone.
The candidates are found by tree-sitter queries (in C), so a large bundle costs one parse.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass

import tree_sitter as ts

from chainwatch.analysis import jsast

GLOBALS = frozenset({"window", "globalThis", "self", "global", "top", "parent", "frames"})
WALLETS = frozenset({"ethereum", "solana", "tronWeb", "tronLink", "phantom", "solflare", "okxwallet"})
#: what replacing each holder's key means (api name for the rule)
HOOKABLE: dict[str, dict[str, str]] = {
    "global": {"fetch": "fetch"},
    "xhr-proto": {"open": "xhr", "send": "xhr", "setRequestHeader": "xhr"},
    "wallet": {k: "wallet" for k in (
        "request", "send", "sendAsync", "enable", "signTransaction", "signAllTransactions",
        "signAndSendTransaction", "signMessage", "signTypedData")},
}
_KEYS = sorted({k for keys in HOOKABLE.values() for k in keys})
_KEY_ALT = "|".join(_KEYS)
_ABSENT = (r"(!\s*\(?\s*({g})\s*(\.\s*|\[\s*['\"`]){k}\b|typeof\s+(({g})\s*(\.\s*|\[\s*['\"`]))?{k}\b"
           r"|!\s*\(\s*['\"`]{k}['\"`]\s+in\b|\b{k}\s*(===?|!==?)\s*(undefined|null)\b)")
_GLOBAL_ALT = "|".join(sorted(GLOBALS))
_HOLDER_HINT = "|".join(sorted(GLOBALS | WALLETS | {"XMLHttpRequest", "prototype"}))

_QUERY = f"""
(variable_declarator name: (identifier) @alias.name value: (_) @alias.value
  (#match? @alias.value "({_HOLDER_HINT})"))
(assignment_expression left: (identifier) @alias.name right: (_) @alias.value
  (#match? @alias.value "({_HOLDER_HINT})"))
(variable_declarator name: (identifier) @const.name value: (string) @const.value
  (#match? @const.value "^['\\"`]({_KEY_ALT})['\\"`]$"))
(assignment_expression left: [(member_expression) (subscript_expression)] @assign.left
  right: (_) @assign.right
  (#match? @assign.left "({_KEY_ALT}|\\\\])$")) @assign
(call_expression
  function: (member_expression object: (identifier) @call.obj property: (property_identifier) @call.fn)
  arguments: (arguments) @call.args
  (#match? @call.obj "^(Object|Reflect)$")
  (#match? @call.fn "^(defineProperty|defineProperties|assign)$")) @call
"""


@dataclass(frozen=True)
class Hook:
    api: str  # fetch | xhr | wallet
    offset: int
    length: int
    how: str


def _text(node: ts.Node | None) -> str:
    return node.text.decode("utf-8", "replace") if node is not None and node.text else ""


def _string_value(node: ts.Node) -> str | None:
    if node.type == "string":
        return _text(node)[1:-1]
    if node.type == "template_string" and node.named_child_count == 0:
        return _text(node)[1:-1]
    return None


class _Scope:
    def __init__(self) -> None:
        self.aliases: dict[str, str] = {}
        self.consts: dict[str, str] = {}

    def key(self, node: ts.Node | None) -> str | None:
        """The constant name a property node or subscript index stands for."""
        if node is None:
            return None
        if node.type in ("property_identifier", "shorthand_property_identifier",
                         "private_property_identifier"):
            return _text(node)
        if node.type == "identifier":
            return self.consts.get(_text(node))
        return _string_value(node)

    def holder(self, node: ts.Node | None) -> str | None:
        """global | xhr | xhr-proto | wallet, or None."""
        if node is None:
            return None
        if node.type == "parenthesized_expression" and node.named_child_count == 1:
            return self.holder(node.named_children[0])
        if node.type == "ternary_expression":  # typeof window !== 'undefined' ? window : null
            return (self.holder(node.child_by_field_name("consequence"))
                    or self.holder(node.child_by_field_name("alternative")))
        if node.type == "binary_expression" and _text(node.child_by_field_name("operator")) in (
                "||", "&&", "??"):
            return (self.holder(node.child_by_field_name("right"))
                    or self.holder(node.child_by_field_name("left")))
        if node.type == "identifier":
            name = _text(node)
            if name in GLOBALS:
                return "global"
            if name in WALLETS:
                return "wallet"
            if name == "XMLHttpRequest":
                return "xhr"
            return self.aliases.get(name)
        if node.type in ("member_expression", "subscript_expression"):
            obj = node.child_by_field_name("object")
            if node.type == "member_expression":
                key = self.key(node.child_by_field_name("property"))
            else:
                key = self.key(node.child_by_field_name("index"))
            inner = self.holder(obj)
            # whatever holds them: these names are the page's own objects
            if key in WALLETS:
                return "wallet"
            if key == "XMLHttpRequest":
                return "xhr"
            if key == "prototype" and inner == "xhr":
                return "xhr-proto"
            if key in GLOBALS and inner == "global":
                return "global"
        return None


def _absent_test(key: str) -> re.Pattern[str]:
    """A condition that is *only* a test that the API is missing: ``!window.fetch``,
    ``typeof fetch === 'undefined'``, ``!('fetch' in self)``, ``fetch == null`` (never a test
    joined to anything else, as ``!window.fetch || 1``, nor a test that it is present)."""
    ref = rf"(?:(?:{_GLOBAL_ALT})\s*(?:\.\s*{key}|\[\s*['\"`]{key}['\"`]\s*\])|{key})"
    undef = r"(?:['\"`]undefined['\"`])"
    forms = (rf"!\s*{ref}", rf"typeof\s+{ref}\s*===?\s*{undef}", rf"{undef}\s*===?\s*typeof\s+{ref}",
             rf"!\s*\(\s*['\"`]{key}['\"`]\s+in\s+(?:{_GLOBAL_ALT})\s*\)",
             rf"{ref}\s*===?\s*(?:undefined|null)")
    return re.compile("|".join(f"(?:{f})" for f in forms))


def _only_absence(cond: ts.Node | None, test: re.Pattern[str]) -> bool:
    text = _text(cond).strip()
    while text.startswith("(") and text.endswith(")"):
        text = text[1:-1].strip()
    return test.fullmatch(text) is not None


def _absent_guarded(node: ts.Node, key: str) -> bool:
    """In the branch taken when a test says the API is missing (a polyfill), or
    ``typeof fetch === 'undefined' && (fetch = …)``."""
    test = _absent_test(re.escape(key))
    child, parent = node, node.parent
    depth = 0
    while parent is not None and depth < 12:
        if parent.type in ("if_statement", "ternary_expression"):
            taken = parent.child_by_field_name("consequence")
            if taken is not None and taken.id == child.id and _only_absence(
                    parent.child_by_field_name("condition"), test):
                return True
        left = parent.child_by_field_name("left")
        if parent.type == "binary_expression" and left is not None and left.id != child.id \
                and _text(parent.child_by_field_name("operator")) == "&&" \
                and _only_absence(left, test):
            return True
        child, parent = parent, parent.parent
        depth += 1
    return False


_INLINE = {"function_expression", "function", "arrow_function", "new_expression",
           "call_expression", "class", "await_expression"}


def _reads_original(root_text: str) -> bool:
    """The file reads the page's fetch as a value (to wrap it), not only calls it."""
    return re.search(rf"(=|\(|,|:)\s*({_GLOBAL_ALT})\s*(\.\s*fetch|\[\s*['\"`]fetch['\"`]\s*\])"
                     r"\s*($|[;,)\n.}])", root_text) is not None


def _fetch_is_hook(value: ts.Node | None, target: ts.Node, scope_text: str) -> bool:
    if value is None:
        return True
    if value.type == "binary_expression" and _text(value.child_by_field_name("left")) == _text(target):
        return False  # fetch = fetch || impl
    if value.type in _INLINE:
        return True
    return _reads_original(scope_text)


def _descriptor_value(desc: ts.Node | None) -> ts.Node | None:
    """The ``value`` (or ``get``) of a property descriptor object literal."""
    if desc is None or desc.type != "object":
        return None
    for pair in desc.named_children:
        if pair.type == "pair" and _text(pair.child_by_field_name("key")).strip("'\"") in ("value", "get"):
            return pair.child_by_field_name("value")
        if pair.type == "method_definition" and _text(pair.child_by_field_name("name")) == "get":
            return pair
    return None


def _object_entries(obj: ts.Node, scope: _Scope) -> list[tuple[str, ts.Node, ts.Node | None]]:
    out: list[tuple[str, ts.Node, ts.Node | None]] = []
    if obj.type != "object":
        return out
    for item in obj.named_children:
        if item.type == "pair":
            keynode = item.child_by_field_name("key")
            if keynode is not None and keynode.type == "computed_property_name" and keynode.named_child_count:
                keynode = keynode.named_children[0]
            key = scope.key(keynode)
            if key:
                out.append((key, item, item.child_by_field_name("value")))
        elif item.type == "shorthand_property_identifier":
            out.append((_text(item), item, item))
        elif item.type == "method_definition":
            key = scope.key(item.child_by_field_name("name"))
            if key:
                out.append((key, item, item))
    return out


_Caps = dict[str, list[ts.Node]]
#: (where a parsed text starts in the file, the query matches of that text)
_Part = tuple[int, list[_Caps]]
#: (node, holder, key, value, target, how) of a place that may replace an API
_Site = tuple[ts.Node, "str | None", "str | None", "ts.Node | None", ts.Node, str]
_HOOKABLE_KEYS = frozenset(_KEYS)


def _matches(data: bytes, kind: str) -> list[_Caps] | None:
    parsed = _parsed(data, kind)
    return None if parsed is None else parsed[0]


def _parsed(data: bytes, kind: str) -> tuple[list[_Caps], ts.Tree] | None:
    query = jsast.compile_query(kind, _QUERY)
    if query is None:
        return None
    tree = jsast.parse(data, kind)
    return [caps for _, caps in jsast.matches(query, tree.root_node)], tree


def _cut(tree: ts.Tree, at: int, end: int) -> bool:
    """The binding whose name stands at ``at`` runs to the end of its window (``end``), or is
    broken there: the window may have cut its value short."""
    node: ts.Node | None = tree.root_node.descendant_for_byte_range(at, at)
    while node is not None:
        if node.type in ("variable_declarator", "assignment_expression"):
            return node.end_byte >= end or node.has_error
        if node.is_error:
            return True
        node = node.parent
    return False  # no binding here (a string, a comment, a parameter's default)


@jsast.noting_cache(maxsize=4)
def find_hooks(data: bytes, kind: str = "javascript") -> tuple[Hook, ...]:
    """Every replaced fetch / XHR method / wallet provider method in one JS/TS text."""
    matches = _matches(data, kind)
    if matches is None:
        return ()
    return _judge([(0, matches)], data.decode("utf-8", "replace"))


def _bind(parts: list[_Part]) -> _Scope:
    """The constants and aliases the matches bind (two rounds: an alias of an alias)."""
    scope = _Scope()
    for _ in range(2):
        for _base, matches in parts:
            for caps in matches:
                if "const.name" in caps:
                    literal = _string_value(caps["const.value"][0])
                    if literal is not None:
                        scope.consts[_text(caps["const.name"][0])] = literal
                elif "alias.name" in caps:
                    kind_ = scope.holder(caps["alias.value"][0])
                    if kind_:
                        scope.aliases[_text(caps["alias.name"][0])] = kind_
    return scope


def _judge(parts: list[_Part], text: str) -> tuple[Hook, ...]:
    """The hooks among the matches of one or more parsed texts of a file (``text``: the
    whole file's, for the test that it reads the page's own fetch)."""
    scope = _bind(parts)  # bindings first, then the places that replace an API
    hooks: list[Hook] = []
    for base, matches in parts:
        for caps in matches:
            for site in _sites(caps, scope):
                _add(hooks, scope, *site, text, base)
    return tuple(sorted(set(hooks), key=lambda h: h.offset))


def _sites(caps: _Caps, scope: _Scope) -> list[_Site]:
    out: list[_Site] = []
    if "assign" in caps:
        left = caps["assign.left"][0]
        obj = left.child_by_field_name("object")
        keynode = left.child_by_field_name(
            "property" if left.type == "member_expression" else "index")
        out.append((caps["assign"][0], scope.holder(obj), scope.key(keynode),
                    caps["assign.right"][0], left, "assignment"))
    elif "call" in caps:
        fn = _text(caps["call.fn"][0])
        args = caps["call.args"][0].named_children
        if not args:
            return out
        holder = scope.holder(args[0])
        if holder is None:
            return out
        call = caps["call"][0]
        how = f"{_text(caps['call.obj'][0])}.{fn}"
        if fn == "defineProperty" and len(args) >= 2:
            value = _descriptor_value(args[2]) if len(args) >= 3 else None
            out.append((call, holder, scope.key(args[1]), value, args[0], how))
        elif fn in ("defineProperties", "assign"):
            for src in args[1:]:
                for key, _node, value in _object_entries(src, scope):
                    if fn == "defineProperties" and value is not None:
                        value = _descriptor_value(value)
                    out.append((call, holder, key, value, args[0], how))
    return out


# --- large files: parsed in windows -------------------------------------------------------
#: Bytes parsed before and after each place a rule's needle matched in a large file (a
#: polyfill's guard may open well before the assignment it guards).
WINDOW_BEFORE = 16 * 1024
WINDOW_AFTER = 4096
#: Bytes parsed before each binding of a name the windows lead to.
BINDING_RADIUS = 2048
#: More places of one name than this (a minifier's ``e``), or more windows than MAX_WINDOWS,
#: and the file is parsed whole instead: never a hook missed for want of a window.
MAX_NAME_SITES = 128
MAX_WINDOWS = 512
#: Names followed over all rounds (each is a pass over the text).
MAX_NAMES = 64
#: Rounds of following names (each may lead to new ones); past them, the whole text.
MAX_ROUNDS = 6
#: ``k = 'fetch'``: a name before it may stand for a hookable key wherever it is used (the
#: pattern starts with a literal, which the regex engine finds fast; the name is read back)
_CONST_KEY = re.compile(rb"=\s*['\"`](?:" + _KEY_ALT.encode() + rb")['\"`]")
_NAME_BEFORE = re.compile(rb"(?<![\w$])([A-Za-z_$][\w$]*)\s*$")
#: what may stand between a name and its ``=``
_GAP = rb"(?:\s|/\*(?:[^*]|\*(?!/))*\*/|//[^\n]*\n)*"


class _TooMany(Exception):
    pass


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(spans):
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def _name_sites(data: bytes, name: str | bytes, after: bytes, before: bytes = b".") -> list[int]:
    """Where ``name`` stands, followed by ``after`` (a pattern) and not preceded by a name
    character or any of ``before`` (at most MAX_NAME_SITES, else _TooMany)."""
    raw = name.encode() if isinstance(name, str) else name
    found: list[int] = []
    for m in re.finditer(re.escape(raw) + after, data):
        at = m.start()
        if at and (data[at - 1:at].isalnum() or data[at - 1:at] in (b"_", b"$")
                   or data[at - 1:at] in before):
            continue
        found.append(at)
        if len(found) > MAX_NAME_SITES:
            raise _TooMany
    return found


@jsast.noting_cache(maxsize=4)
def find_hooks_windowed(data: bytes, kind: str, offsets: tuple[int, ...]) -> tuple[Hook, ...]:
    """:func:`find_hooks` of a large text, parsing only windows: around ``offsets`` (where
    the browser rules' needles matched), around every ``name = 'fetch'``-like binding and
    each use of such a name as a key, around every use of an alias the windows bind, and
    around the bindings of every unresolved name that holds, at a candidate place, the
    object whose hookable key is replaced (rounds until no new name: an alias of an alias).
    When a name has too many places to follow (a minifier's ``e``), or the rounds or windows
    run out, the text is parsed whole: a window never hides a hook for want of a binding."""
    size = len(data)

    def around(at: int, before: int, after: int) -> tuple[int, int]:
        return max(0, at - before), min(size, at + after)

    try:
        spans = [around(o, WINDOW_BEFORE, WINDOW_AFTER) for o in offsets]
        bindings: list[int] = []  # where a followed binding's name stands
        key_names: set[bytes] = set()
        for n, m in enumerate(_CONST_KEY.finditer(data)):
            if n >= MAX_NAME_SITES:
                raise _TooMany
            name = _NAME_BEFORE.search(data, max(0, m.start() - 256), m.start())
            if name is not None:
                spans.append(around(name.start(), BINDING_RADIUS, WINDOW_AFTER))
                bindings.append(name.start())
                key_names.add(name.group(1))
        for key_name in sorted(key_names):
            # ``x[k]``, ``{[k]: …}``, ``defineProperty(x, k, …)``
            for at in _name_sites(data, key_name, rb"\s*\]", b""):
                spans.append(around(at, WINDOW_BEFORE, WINDOW_AFTER))
            for at in _name_sites(data, key_name, rb"\s*[,)]", b""):
                if re.search(rb",\s*$", data[max(0, at - 64):at]):
                    spans.append(around(at, WINDOW_BEFORE, WINDOW_AFTER))
        parsed: dict[tuple[int, int], tuple[list[_Caps], ts.Tree]] = {}
        chased: set[str] = set()
        followed: set[str] = set()
        text = data.decode("utf-8", "replace")
        for _ in range(MAX_ROUNDS):
            windows = _merge(spans)
            if len(windows) > MAX_WINDOWS:
                raise _TooMany
            parts: list[_Part] = []
            for lo, hi in windows:
                if (lo, hi) not in parsed:
                    got = _parsed(data[lo:hi], kind)
                    if got is None:
                        return ()
                    parsed[(lo, hi)] = got
                parts.append((lo, parsed[(lo, hi)][0]))
            # a binding whose value the window may have cut short: the whole text decides
            for at in bindings:
                lo, hi = windows[bisect.bisect_right(windows, (at, size + 1)) - 1]
                if hi < size and _cut(parsed[(lo, hi)][1], at - lo, hi - lo):
                    raise _TooMany
            bindings.clear()
            # an alias may be used far from its binding (``P.send = …``, ``var Q = P.x``)
            aliases = set(_bind(parts).aliases) - followed
            # a name that holds the object at a hookable place may be bound far away
            wanted = _unbound_holders(parts) - chased
            if not aliases and not wanted:
                return _judge(parts, text)
            followed |= aliases
            chased |= wanted
            if len(followed) + len(chased) > MAX_NAMES:
                raise _TooMany  # each name is a pass over the text: bounded
            for alias in sorted(aliases):
                for at in _name_sites(data, alias, rb"(?![\w$])"):
                    spans.append(around(at, WINDOW_BEFORE, WINDOW_AFTER))
            for holder in sorted(wanted):
                for at in _name_sites(data, holder, _GAP + rb"=(?![=>])"):
                    spans.append(around(at, BINDING_RADIUS, WINDOW_AFTER))
                    bindings.append(at)
        raise _TooMany
    except _TooMany:
        return find_hooks(data, kind)


def _unbound_holders(parts: list[_Part]) -> set[str]:
    """Names whose binding would decide whether a place replaces a hookable key: those in the
    holder of a candidate place whose key is hookable, when the windows did not resolve it."""
    scope = _bind(parts)
    names: set[str] = set()
    for _base, matches in parts:
        for caps in matches:
            if "assign" in caps:
                left = caps["assign.left"][0]
                keynode = left.child_by_field_name(
                    "property" if left.type == "member_expression" else "index")
                if scope.key(keynode) in _HOOKABLE_KEYS \
                        and scope.holder(left.child_by_field_name("object")) is None:
                    names |= _free_names(left.child_by_field_name("object"), scope)
            elif "call" in caps:
                args = caps["call.args"][0].named_children
                if not args or scope.holder(args[0]) is not None:
                    continue
                if _text(caps["call.fn"][0]) == "defineProperty":
                    keys = {scope.key(args[1])} if len(args) >= 2 else set()
                else:
                    keys = {key for src in args[1:] for key, *_ in _object_entries(src, scope)}
                if keys & _HOOKABLE_KEYS:
                    names |= _free_names(args[0], scope)
    return names


def _free_names(node: ts.Node | None, scope: _Scope, depth: int = 0) -> set[str]:
    """Identifiers of a holder expression the scope does not know (that could be aliases)."""
    if node is None or depth > 8:
        return set()
    if node.type == "identifier":
        name = _text(node)
        if name in GLOBALS or name in WALLETS or name == "XMLHttpRequest" \
                or name in scope.aliases:
            return set()
        return {name}
    out: set[str] = set()
    for child in node.named_children[:8]:
        out |= _free_names(child, scope, depth + 1)
    return out


def _add(hooks: list[Hook], scope: _Scope, node: ts.Node, holder: str | None, key: str | None,
         value: ts.Node | None, target: ts.Node, how: str, text: str, base: int = 0) -> None:
    if holder is None or key is None:
        return
    api = HOOKABLE.get(holder, {}).get(key)
    if api is None:
        return
    if api == "fetch" and (_absent_guarded(node, key) or not _fetch_is_hook(value, target, text)):
        return
    hooks.append(Hook(api, base + node.start_byte, node.end_byte - node.start_byte, how))


# --- what a hook does with what it intercepts ------------------------------------------------
#: an absolute URL of a named host (loopback is not "a host" data could leave for)
_HOST_URL = re.compile(r"^['\"`](https?|wss?)://(?!(localhost|127\.|\[::1\]|0\.0\.0\.0)[:/'\"`])"
                       r"[\w.-]+\.[A-Za-z]{2,}")
#: fields of a wallet transaction request whose rewriting redirects the funds
TX_FIELDS = frozenset({"to", "value", "recipient", "destination", "toPubkey", "receiver",
                       "toAddress", "data"})
#: calls that hand data to a connection opened elsewhere in the hook
_SEND_CALLS = frozenset({"sendBeacon", "send"})
_FUNCTIONS = ("arrow_function", "function_expression", "function", "function_declaration",
              "generator_function", "method_definition")


def _walk(node: ts.Node) -> list[ts.Node]:
    out: list[ts.Node] = []
    stack = [node]
    while stack:
        n = stack.pop()
        out.append(n)
        stack.extend(reversed(n.named_children))
    return out


def _names(node: ts.Node) -> set[str]:
    return {_text(n) for n in _walk(node) if n.type in ("identifier",
                                                          "shorthand_property_identifier")}


def _root(node: ts.Node | None) -> ts.Node | None:
    while node is not None and node.type in ("member_expression", "subscript_expression"):
        node = node.child_by_field_name("object")
    return node


def _in_return(node: ts.Node, fn: ts.Node) -> bool:
    """``node`` is (part of) what the hook function ``fn`` returns to its caller: in a return
    statement of ``fn`` itself or in its expression body (a nested callback's return is not)."""
    child, parent = node, node.parent
    while parent is not None:
        if parent.type == "sequence_expression" and parent.named_children \
                and parent.named_children[-1].id != child.id:
            return False  # ``(send(x), orig(u))``: evaluated for its effect, not returned
        if parent.id == fn.id:
            body = fn.child_by_field_name("body")
            return body is not None and body.type != "statement_block"
        if parent.type == "return_statement":
            return True
        if parent.type in _FUNCTIONS:
            return False
        child, parent = parent, parent.parent
    return False


def hook_abuse(data: bytes, kind: str, hook: Hook) -> str | None:
    """What the replacement function of ``hook`` does with the data it intercepts, when that
    is an attack: ``exfil: …`` (its arguments reach a request to a host named in the hook
    itself, by sendBeacon, an Image URL, XHR/WebSocket send or a fetch not returned to the
    caller) or ``rewrite: …`` (a wallet hook assigns a transaction's recipient/amount field of
    what the page asked to sign). None for a wrapper that logs, retries or forwards."""
    span = data[hook.offset:hook.offset + hook.length]
    if len(span) > 256 * 1024:
        return None
    query_free = jsast.parse(span, kind)
    nodes = _walk(query_free.root_node)
    fn = next((n for n in nodes if n.type in _FUNCTIONS), None)
    if fn is None:
        return None
    params_node = fn.child_by_field_name("parameters") or fn.child_by_field_name("parameter")
    tainted = (_names(params_node) if params_node is not None else set()) | {"arguments"}
    body = fn.child_by_field_name("body") or fn
    inner = _walk(body)
    # values computed from the intercepted arguments (one pass, in source order)
    for n in sorted(inner, key=lambda x: x.start_byte):
        if n.type == "variable_declarator":
            name, value = n.child_by_field_name("name"), n.child_by_field_name("value")
            if name is not None and value is not None and _names(value) & tainted:
                tainted |= _names(name)
    if hook.api == "wallet":
        for n in inner:
            if n.type != "assignment_expression":
                continue
            left = n.child_by_field_name("left")
            if left is None or left.type not in ("member_expression", "subscript_expression"):
                continue
            prop = left.child_by_field_name(
                "property" if left.type == "member_expression" else "index")
            key = _text(prop) if prop is not None and prop.type == "property_identifier" \
                else (_string_value(prop) if prop is not None else None)
            root = _root(left)
            if key in TX_FIELDS and root is not None and _text(root) in tainted:
                return f"rewrite: sets the transaction's `{key}` before it is signed"
    if not any(n.type in ("string", "template_string") and _HOST_URL.match(_text(n))
               for n in inner):
        return None
    for n in inner:
        if n.type == "call_expression":
            callee = n.child_by_field_name("function")
            args = n.child_by_field_name("arguments")
            if callee is None or args is None or not (_names(args) & tainted):
                continue
            called = _text(callee.child_by_field_name("property")) \
                if callee.type == "member_expression" else _text(callee)
            has_url = any(c.type in ("string", "template_string") and _HOST_URL.match(_text(c))
                          for c in _walk(args))
            if (called in _SEND_CALLS or has_url) and not _in_return(n, fn):
                return f"exfil: the intercepted request reaches {called}() to a host"
        elif n.type == "assignment_expression":
            left = n.child_by_field_name("left")
            right = n.child_by_field_name("right")
            if left is None or right is None or left.type != "member_expression":
                continue
            if _text(left.child_by_field_name("property")) in ("src", "href", "action") \
                    and _names(right) & tainted \
                    and any(c.type in ("string", "template_string")
                            and _HOST_URL.match(_text(c)) for c in _walk(right)):
                return "exfil: the intercepted request is put in a URL to a host"
    return None
