"""Behaviour chains within one file: a source of secrets or host facts, maybe a transform, a sink.

Sources: ``process.env`` (whole, or a secret-looking key), reads of credential files (``~/.npmrc``,
``~/.ssh``, cloud credentials, wallet stores), host facts (``os.hostname``, ``os.userInfo``,
``os.networkInterfaces``, ``whoami``). Transforms: ``JSON.stringify``, base64/hex encoding,
ciphers, zlib. Sinks: the network (http/https/net/tls/dns/dgram, ``fetch``, WebSocket, axios,
got, request …), process execution, writes outside the package folder.

Data flow is followed through variables (declarations and assignments, ``o.x = v`` taints
``o``, ``a.push(v)`` taints ``a``), the arguments of functions declared in the same file, and
the parameters of callbacks handed to a source (``readFile(p, (e, d) => …)``,
``.then(d => …)``). Names are scoped to the enclosing function. Not covered: flow between
files, through object properties read back by another name, returns of functions, classes,
promises other than ``.then``, and aliasing through destructuring of tainted objects. The file
text analysed is whatever the engine hands over: the surface and the normalised view.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import tree_sitter as ts

from chainwatch.analysis import jsast
from chainwatch.analysis.detectors import Hit, detector
from chainwatch.model import PackageFile

#: Files larger than this are not followed (the rules still read them).
MAX_BYTES = 128 * 1024
#: Tree nodes per file, functions nested in each other, and passes over the assignments
#: (function arguments feed back).
MAX_NODES = 300_000
MAX_FUNCTION_DEPTH = 1000
MAX_PASSES = 3
MAX_SUBTREE = 4000

#: A key that names a secret, in any case (``npm_config__authToken``, ``AWS_SECRET_ACCESS_KEY``).
SECRET_WORD = re.compile(
    r"TOKEN|SECRET|PASSW|PWD|API_?KEY|PRIVATE_?KEY|ACCESS_?KEY|KEY$|AUTH|CRED|SSH|MNEMONIC|"
    r"SEED_?PHRASE|WALLET|SESSION|COOKIE", re.I)
#: A webhook URL is itself the credential that posts to the channel.
WEBHOOK = re.compile(r"WEBHOOK", re.I)
#: A service's own variable (``NPM_PASS``, ``GITHUB_PAT``): a secret by default. Upper case, as
#: people set them: npm's lower-case ``npm_config_*``, ``npm_package_*``, ``npm_lifecycle_*``
#: and ``npm_execpath``, which npm hands every script, are settings unless a key names a secret.
SERVICE_PREFIX = re.compile(
    r"^(NPM|AWS|GITHUB|GH|GITLAB|AZURE|GOOGLE|GCP|SLACK|DISCORD|STRIPE|OPENAI|ANTHROPIC)_")
#: ...except where it only says where or how to reach the service: an SDK's own endpoint,
#: region or credentials URI is where it sends its requests (``AWS_EC2_METADATA_SERVICE_ENDPOINT``,
#: ``AWS_CONTAINER_CREDENTIALS_RELATIVE_URI``), whatever word comes before it.
PLACE = re.compile(r"_(ENDPOINT|ENDPOINT_MODE|URL|URI|HOST|HOSTNAME|PORT|REGION|PATH|DIR)$", re.I)
SERVICE_SETTING = re.compile(r"_PROFILE$", re.I)


def secret_key(key: str) -> bool:
    """Does an environment key name a credential (not a setting of the tool that reads it)?"""
    if WEBHOOK.search(key):
        return True
    if PLACE.search(key):
        return False
    if SECRET_WORD.search(key):
        return True
    return bool(SERVICE_PREFIX.search(key)) and not SERVICE_SETTING.search(key)


CREDENTIAL_PATH = re.compile(
    r"\.npmrc|\.ssh|id_rsa|id_ed25519|id_ecdsa|\.aws|credentials|gcloud|application_default|"
    r"\.azure|accessTokens|Exodus|MetaMask|nkbihfbeogaeaoehlefnkodbefgpgknn|solana|id\.json|"
    r"keystore|wallet\.dat|\.git-credentials|\.netrc|\.docker/config|\.kube/config|hosts\.yml|"
    r"Login Data|Local State|\.env\b", re.I)
#: Names of wallet secrets: a value read from, or stored under, such a name is key material.
WALLET_KEY = re.compile(
    r"^(private_?key|secret_?key|mnemonic|seed_?phrase|recovery_?phrase|secret_?phrase|"
    r"seed_?words|mnemonic_?phrase)$", re.I)
#: A call on one of these is a call of the global (``globalThis.fetch(…)`` is ``fetch(…)``).
GLOBAL_OBJECTS = {"global", "globalThis", "window", "self"}
#: The text ``source`` accepts as ``process.env`` (its own member expression, spaces allowed).
_PROCESS_ENV = re.compile(rb"process *\. *env")
_WALLET_WORD = re.compile(rb"(?i)\b(private_?key|secret_?key|mnemonic|seed_?phrase|recovery_?phrase"
                          rb"|secret_?phrase|seed_?words|mnemonic_?phrase)\b")
#: Places a wallet word is looked at to decide whether a file has a source at all.
MAX_WALLET_WORDS = 256
HOST_CALLS = {"hostname", "userInfo", "networkInterfaces"}
HOST_COMMAND = re.compile(r"^\W*(whoami|hostname|id|ipconfig|ifconfig|uname|systeminfo)\b")
READ_CALLS = {"readFileSync", "readFile", "createReadStream", "readdirSync", "readdir"}
TRANSFORMS = {"stringify", "btoa", "createCipher", "createCipheriv", "publicEncrypt",
              "gzipSync", "gzip", "deflateSync", "deflate", "brotliCompressSync", "encrypt"}
NET_MODULES = {"http", "https", "net", "tls", "dns", "dgram", "axios", "node-fetch", "got",
               "request", "undici", "ws", "superagent", "needle", "http2", "phin", "cross-fetch"}
NET_METHODS = {"request", "get", "post", "put", "patch", "connect", "createConnection", "send",
               "lookup", "resolve", "resolve4", "resolve6", "resolveTxt", "resolveAny",
               "resolveCname", "fetch", "write", "end", "setHeader"}
NET_GLOBALS = {"fetch", "axios", "got", "request", "superagent", "needle", "phin"}
NET_CONSTRUCTORS = {"WebSocket", "XMLHttpRequest", "Socket"}
EXEC_MODULES = {"child_process"}
EXEC_METHODS = {"exec", "execSync", "spawn", "spawnSync", "execFile", "execFileSync", "fork"}
FS_MODULES = {"fs", "fs/promises", "fs-extra", "graceful-fs"}
WRITE_METHODS = {"writeFileSync", "writeFile", "appendFileSync", "appendFile",
                 "createWriteStream", "outputFile", "outputFileSync"}
OUTSIDE = re.compile(r"homedir|HOME|USERPROFILE|APPDATA|tmpdir|^['\"`]/|^['\"`]~|\.\./|"
                     r"['\"`][A-Za-z]:\\\\")
#: Built-in modules the normalised view may name without a require (normalize.BUILTIN_MODULES).
VIEW_MODULES = {"os", "fs", "http", "https", "http2", "net", "tls", "dns", "dgram",
                "child_process"}
#: Where a request carries its own credential: a named secret there authenticates the request
#: to the service it is for (an SDK sending its token to its endpoint), not exfiltration. The
#: whole environment, a credential file or a serialised or encrypted value there still is.
AUTH_FIELD = re.compile(r"^((proxy-)?authorization|auth|x-api-key|x-auth-token|private-token)$",
                        re.I)
NOT_CREDENTIAL_USE = {"stringify", "createCipher", "createCipheriv", "publicEncrypt", "encrypt",
                      "gzipSync", "gzip", "deflateSync", "deflate", "brotliCompressSync"}
BUILTINS = {"Object", "Array", "JSON", "Promise", "Reflect", "Math", "String", "Buffer",
            "process", "console", "module", "exports", "require"}
FUNCTION_TYPES = {"function_declaration", "function_expression", "arrow_function",
                  "method_definition", "generator_function_declaration", "function"}


@dataclass(frozen=True)
class Taint:
    kind: str            # "secret" or "host"
    what: str
    line: int
    transform: tuple[str, int] | None = None


@dataclass(frozen=True)
class Chain:
    source: Taint
    sink: str
    sink_kind: str       # network | exec | write
    sink_line: int
    sink_offset: int
    sink_length: int
    transform: tuple[str, int] | None = None


@dataclass
class _Scopes:
    parent: dict[int, int] = field(default_factory=dict)
    tainted: dict[tuple[int, str], Taint] = field(default_factory=dict)


def _name(node: ts.Node | None) -> str:
    return node.text.decode("utf-8", "replace") if node is not None and node.text else ""


def _last(fn: ts.Node | None) -> tuple[str, ts.Node | None]:
    """Property name and receiver of a callee: ``a.b.c`` → ('c', a.b); ``f`` → ('f', None)."""
    if fn is None:
        return "", None
    if fn.type == "member_expression":
        return _name(fn.child_by_field_name("property")), fn.child_by_field_name("object")
    if fn.type == "subscript_expression":
        index = fn.child_by_field_name("index")
        key = _name(index).strip("'\"`") if index is not None and index.type == "string" else ""
        return key, fn.child_by_field_name("object")
    if fn.type == "identifier":
        return _name(fn), None
    return "", None


def _root(node: ts.Node | None) -> str:
    for _ in range(32):
        if node is None:
            return ""
        if node.type == "identifier":
            return _name(node)
        if node.type == "call_expression":
            fn = node.child_by_field_name("function")
            if fn is not None and fn.type == "identifier" and _name(fn) == "require":
                return "require(" + _required(node) + ")"
            node = fn
            continue
        node = node.child_by_field_name("object")
    return ""


def _required(call: ts.Node) -> str:
    args = call.child_by_field_name("arguments")
    first = args.named_children[0] if args is not None and args.named_children else None
    if first is not None and first.type == "string":
        return _name(first)[1:-1].removeprefix("node:")
    return ""


class _Analysis:
    def __init__(self, data: bytes, lang: str) -> None:
        self.tree = jsast.parse(data, lang)
        self.modules: dict[str, str] = {}       # local name -> module (or module.member)
        self.functions: dict[str, list[ts.Node]] = {}  # function name -> parameter nodes
        self.lang = lang
        self._fns: list[ts.Node] = []         # function nodes in document order
        self._fn_parent: list[int] = []       # index of the enclosing function, -1 for none
        self._fn_starts: list[int] = []
        self.scopes = _Scopes()
        self.assigns: list[tuple[int, ts.Node, ts.Node]] = []  # (scope, target, value)
        self.calls: list[tuple[int, ts.Node]] = []
        self.net_objects: set[tuple[int, str]] = set()
        self._values: dict[str, ts.Node] | None = None
        self._names: set[str] | None = None

    # -- one pass over the nodes that matter ------------------------------------------------
    def walk(self) -> bool:
        """Collect declarations, assignments, calls, imports and functions with their scopes.

        tree-sitter finds the nodes (one query, C side); their scopes come from the nesting of
        the function nodes, so no Python code visits the rest of the tree.
        """
        root = self.tree.root_node
        if root.descendant_count > MAX_NODES:
            return False
        self.scopes.parent[root.id] = root.id
        nodes = sorted(_collect(self.tree, self.lang),
                       key=lambda n: (n.start_byte, -n.end_byte))  # document pre-order
        open_fns: list[tuple[ts.Node, int]] = []  # (function, its index in self._fns)
        for node in nodes:
            while open_fns and not (open_fns[-1][0].start_byte <= node.start_byte and
                                    node.end_byte <= open_fns[-1][0].end_byte):
                open_fns.pop()
            scope = open_fns[-1][0].id if open_fns else root.id
            kind = node.type
            if kind in FUNCTION_TYPES:
                if len(open_fns) >= MAX_FUNCTION_DEPTH:
                    return False
                self.scopes.parent[node.id] = scope
                self._fns.append(node)
                self._fn_parent.append(open_fns[-1][1] if open_fns else -1)
                open_fns.append((node, len(self._fns) - 1))
                self._function(node)
            elif kind == "variable_declarator":
                name, value = node.child_by_field_name("name"), node.child_by_field_name("value")
                if name is not None and value is not None:
                    self.assigns.append((scope, name, value))
                    self._module_binding(name, value)
            elif kind in ("assignment_expression", "augmented_assignment_expression"):
                left, right = node.child_by_field_name("left"), node.child_by_field_name("right")
                if left is not None and right is not None:
                    self.assigns.append((scope, left, right))
            elif kind in ("call_expression", "new_expression"):
                self.calls.append((scope, node))
            elif kind == "import_statement":
                self._import(node)
        self._fn_starts = [f.start_byte for f in self._fns]
        return True

    def scope_of(self, node: ts.Node) -> int:
        """The innermost function holding ``node`` (a function is its own scope), or the file."""
        i = bisect.bisect_right(self._fn_starts, node.start_byte) - 1
        while i >= 0 and self._fns[i].end_byte < node.end_byte:
            i = self._fn_parent[i]
        return self._fns[i].id if i >= 0 else self.tree.root_node.id

    def _function(self, node: ts.Node) -> None:
        params = node.child_by_field_name("parameters") or node.child_by_field_name("parameter")
        plist = ([params] if params is not None and params.type == "identifier"
                 else list(params.named_children) if params is not None else [])
        name = node.child_by_field_name("name")
        if name is None and node.parent is not None and node.parent.type == "variable_declarator":
            name = node.parent.child_by_field_name("name")
        if name is not None and name.type == "identifier":
            self.functions.setdefault(_name(name), plist)

    def _module_binding(self, name: ts.Node, value: ts.Node) -> None:
        root = _root(value)
        if not root.startswith("require("):
            return
        module = root[8:-1]
        if name.type == "identifier":
            member, _ = _last(value) if value.type == "member_expression" else ("", None)
            self.modules[_name(name)] = f"{module}.{member}" if member else module
        elif name.type == "object_pattern":
            for prop in name.named_children:
                if prop.type == "shorthand_property_identifier_pattern":
                    self.modules[_name(prop)] = f"{module}.{_name(prop)}"
                elif prop.type == "pair_pattern":
                    key, local = prop.child_by_field_name("key"), prop.child_by_field_name("value")
                    if local is not None and local.type == "identifier":
                        self.modules[_name(local)] = f"{module}.{_name(key)}"

    def _import(self, node: ts.Node) -> None:
        source = node.child_by_field_name("source")
        if source is None:
            return
        module = _name(source)[1:-1].removeprefix("node:")
        for ident in _descendants(node, 64):
            if ident.type == "identifier" and ident.parent is not None and \
                    ident.parent.type in ("import_clause", "namespace_import"):
                self.modules[_name(ident)] = module
            elif ident.type == "import_specifier":
                local = ident.child_by_field_name("alias") or ident.child_by_field_name("name")
                orig = _name(ident.child_by_field_name("name"))
                self.modules[_name(local)] = f"{module}.{orig}"

    # -- what a call is ------------------------------------------------------------------------
    def _module_of(self, node: ts.Node | None) -> str:
        root = _root(node)
        if root.startswith("require("):
            return root[8:-1]
        if root and root not in self.modules and root in VIEW_MODULES and \
                root not in self._declared():
            return root  # the normalised view names a module alias by the module (o → os)
        return self.modules.get(root, "").split(".")[0] if root else ""

    def _declared(self) -> set[str]:
        if self._names is None:
            self._names = {_name(t) for _, t, _ in self.assigns if t.type == "identifier"}
        return self._names

    def callee(self, call: ts.Node) -> tuple[str, str]:
        """(module or '' , method name) of a call."""
        fn = call.child_by_field_name("function") or call.child_by_field_name("constructor")
        name, receiver = _last(fn)
        if receiver is None and name in self.modules:
            module, _, member = self.modules[name].partition(".")
            return module, member or name
        return self._module_of(receiver) if receiver is not None else "", name

    def source(self, node: ts.Node) -> Taint | None:
        """Is this node a source by itself?"""
        line = node.start_point[0] + 1
        if node.type == "member_expression" and _name(node).replace(" ", "") == "process.env":
            parent = node.parent
            if parent is not None and parent.type in ("member_expression", "subscript_expression") \
                    and parent.child_by_field_name("object") == node:
                key = parent.child_by_field_name("property") or parent.child_by_field_name("index")
                if key is not None and secret_key(_name(key).strip("'\"`")):
                    return Taint("secret", f"process.env.{_name(key).strip(chr(34) + chr(39))}",
                                 line)
                return None
            if parent is not None and parent.type == "variable_declarator":
                pattern = parent.child_by_field_name("name")
                if pattern is not None and pattern.type == "object_pattern":
                    keys = [k for k in re.findall(r"[A-Za-z_$][\w$]*", _name(pattern))
                            if secret_key(k)]
                    return Taint("secret", f"process.env.{keys[0]}", line) if keys else None
            return Taint("secret", "process.env", line)
        if node.type in ("member_expression", "pair", "shorthand_property_identifier"):
            key = (node.child_by_field_name("property") if node.type == "member_expression"
                   else node.child_by_field_name("key") if node.type == "pair" else node)
            name = _name(key).strip("'\"`")
            if key is not None and WALLET_KEY.match(name):
                if node.type == "member_expression" and self._env_alias(node):
                    return None
                return Taint("wallet", name, line)
            return None
        if node.type != "call_expression":
            return None
        module, name = self.callee(node)
        args = node.child_by_field_name("arguments")
        argtext = _name(args)
        if name in HOST_CALLS and module in ("os", ""):
            return Taint("host", f"os.{name}()", line)
        if name in READ_CALLS and (module in FS_MODULES or module == "") and \
                CREDENTIAL_PATH.search(self._resolved(argtext, node)):
            return Taint("secret", f"{name}({argtext[1:60]}", line)
        if module in EXEC_MODULES and name in ("execSync", "exec") and args is not None and \
                args.named_children and HOST_COMMAND.search(_name(args.named_children[0])[1:]):
            return Taint("host", f"{name}({_name(args.named_children[0])[:40]})", line)
        return None

    def _resolved(self, text: str, at: ts.Node) -> str:
        """Text with the values of the file's variables it names, one level deep."""
        if self._values is None:
            self._values = {}
            for _scope, target, value in self.assigns:
                if target.type == "identifier":
                    self._values.setdefault(_name(target), value)
        extra = [_name(self._values[i])[:400] for i in re.findall(r"[A-Za-z_$][\w$]*", text)[:16]
                 if i in self._values]
        return text + " " + " ".join(extra)

    def substituted(self, text: str) -> str:
        """Text with the names of the file's variables replaced by their values, one level
        deep (``rmSync(home)`` with ``home = os.homedir()`` reads ``rmSync(os.homedir())``)."""
        self._resolved("", self.tree.root_node)  # fills self._values
        values = self._values or {}
        names = {n for n in re.findall(r"[A-Za-z_$][\w$]*", text)[:64]
                 if n in values and n not in self.modules}
        if not names:
            return text
        pattern = re.compile(r"(?<![\w$.])(" + "|".join(map(re.escape, sorted(names))) + r")(?![\w$])")
        return pattern.sub(lambda m: _name(values[m.group(1)])[:400], text)

    def sink(self, call: ts.Node, scope: int) -> tuple[str, str] | None:
        module, name = self.callee(call)
        fn = call.child_by_field_name("function") or call.child_by_field_name("constructor")
        _, receiver = _last(fn)
        if call.type == "new_expression" and name in NET_CONSTRUCTORS:
            return "network", f"new {name}"
        if module in NET_MODULES and (name in NET_METHODS or name == module or receiver is None):
            return "network", f"{module}.{name}" if name != module else module
        if module == "" and name in NET_GLOBALS and (
                receiver is None or (receiver.type == "identifier"
                                     and _name(receiver) in GLOBAL_OBJECTS)):
            return "network", name
        if name in ("write", "end", "send") and receiver is not None and \
                self._lookup_net(_root(receiver), scope):
            return "network", f"{_root(receiver)}.{name}"
        if module in EXEC_MODULES and name in EXEC_METHODS:
            return "exec", f"child_process.{name}"
        if module in FS_MODULES and name in WRITE_METHODS:
            args = call.child_by_field_name("arguments")
            first = args.named_children[0] if args is not None and args.named_children else None
            if first is not None and OUTSIDE.search(self._resolved(_name(first), call)):
                return "write", f"fs.{name}"
        return None

    def _lookup_net(self, name: str, scope: int) -> bool:
        return any((s, name) in self.net_objects for s in self._chain(scope))

    def _chain(self, scope: int) -> list[int]:
        out = [scope]
        for _ in range(64):
            parent = self.scopes.parent.get(out[-1], out[-1])
            if parent == out[-1]:
                break
            out.append(parent)
        return out

    def has_source(self, data: bytes) -> bool:
        """Is any node of the file a source (what ``source`` says of it)?"""
        root = self.tree.root_node
        for m in _PROCESS_ENV.finditer(data):
            node = root.descendant_for_byte_range(m.start(), m.end())
            if node is not None and self.source(node) is not None:
                return True
        for n, m in enumerate(_WALLET_WORD.finditer(data)):
            if n >= MAX_WALLET_WORDS:
                break
            node = root.descendant_for_byte_range(m.start(), m.end())
            for cand in (node, node.parent if node is not None else None):
                if cand is not None and self.source(cand) is not None:
                    return True
            if node is not None and node.parent is not None and \
                    node.parent.type in ("member_expression", "subscript_expression") and \
                    node.parent.parent is not None and \
                    node.parent.parent.type == "assignment_expression":
                return True
        return any(self.source(call) is not None for _, call in self.calls
                   if call.type == "call_expression")

    def has_sink(self) -> bool:
        """Is any call a sink? (A write to a network object needs a network sink first.)"""
        return any(self.sink(call, scope) is not None for scope, call in self.calls)

    # -- data flow ---------------------------------------------------------------------------
    def credential_use(self, key: ts.Node | None, value: ts.Node, scope: int) -> bool:
        """Is ``key: value`` a request's own credential (``Authorization: process.env.TOKEN``)?"""
        if key is None or not AUTH_FIELD.match(_name(key).strip("'\"`")):
            return False
        t = self.taint_in(value, scope)
        return t is not None and t.what.startswith("process.env.") and (
            t.transform is None or t.transform[0] not in NOT_CREDENTIAL_USE)

    def taint_in(self, node: ts.Node, scope: int) -> Taint | None:
        """The first source or tainted name inside an expression, with a transform if any.

        A function is what it returns (``const grab = () => process.env.NPM_TOKEN`` is a
        secret wherever ``grab()`` goes), not whatever its body reads on the way (``if
        (process.env.X_TOKEN) …`` in an SDK helper tainted every value computed by calling it)."""
        if node.type in FUNCTION_TYPES:
            for returned in _returned(node):
                t = self.taint_in(returned, self.scope_of(returned))
                if t is not None:
                    return t
            return None
        found: Taint | None = None
        transform: tuple[str, int] | None = None
        skip: set[int] = set()
        skip_to = -1  # the end of a credential handed to its own request (credential_use)
        for sub in _descendants(node, MAX_SUBTREE):
            if sub.id in skip or sub.start_byte < skip_to:
                continue
            if sub.type == "pair" and sub is not node:
                value = sub.child_by_field_name("value")
                if value is not None and self.credential_use(
                        sub.child_by_field_name("key"), value, scope):
                    skip_to = sub.end_byte
                    continue
            if found is None:
                t = self.source(sub)
                if t is None and sub.type in ("member_expression", "subscript_expression") and \
                        self._env_alias(sub):
                    # e.HOME with e = process.env is one key, not the environment
                    obj = sub.child_by_field_name("object")
                    if obj is not None:
                        skip.add(obj.id)
                    t = self._member_taint(sub)
                if t is None and sub.type in ("identifier", "shorthand_property_identifier"):
                    t = self._tainted(_name(sub), self.scope_of(sub))
                if t is not None:
                    found = t
            if transform is None and sub.type == "call_expression":
                _, name = self.callee(sub)
                argtext = _name(sub.child_by_field_name("arguments"))
                if name in TRANSFORMS or (name == "toString" and re.search(
                        r"base64|hex", argtext)) or (name == "from" and "base64" in argtext):
                    transform = (name, sub.start_point[0] + 1)
        if found is None:
            return None
        if transform is not None and found.transform is None:
            return Taint(found.kind, found.what, found.line, transform)
        return found

    def _env_alias(self, node: ts.Node) -> bool:
        """``e.KEY`` where ``e`` holds the whole of process.env (its own key decides)."""
        obj = node.child_by_field_name("object")
        return obj is not None and obj.type == "identifier" and (
            (t := self._tainted(_name(obj), self.scope_of(obj))) is not None
            and t.what == "process.env" and t.transform is None)

    def _member_taint(self, node: ts.Node) -> Taint | None:
        """A read of one key of an object holding the whole environment: that key's taint."""
        key = node.child_by_field_name("property") or node.child_by_field_name("index")
        name = _name(key).strip("'\"`") if key is not None else ""
        if secret_key(name):
            return Taint("secret", f"process.env.{name}", node.start_point[0] + 1)
        return None

    def _tainted(self, name: str, scope: int) -> Taint | None:
        for s in self._chain(scope):
            t = self.scopes.tainted.get((s, name))
            if t is not None:
                return t
        return None

    def _declared_scope(self, name: str, scope: int) -> int:
        for s in self._chain(scope):
            if (s, name) in self.scopes.tainted:
                return s
        return scope

    def propagate(self) -> None:
        for _ in range(MAX_PASSES):
            before = len(self.scopes.tainted)
            for scope, target, value in self.assigns:
                name = _root(target) if target.type != "identifier" else _name(target)
                if not name or name.startswith("require("):
                    continue
                if value.type in ("call_expression", "new_expression") and \
                        (self.sink(value, scope) or ("", ""))[0] == "network":
                    self.net_objects.add((scope, name))
                if target.type in ("member_expression", "subscript_expression") and \
                        self.credential_use(target.child_by_field_name("property")
                                            or target.child_by_field_name("index"), value, scope):
                    continue  # headers.Authorization = 'Bearer ' + process.env.TOKEN
                t = self.taint_in(value, scope)
                if t is None and target.type in ("member_expression", "subscript_expression"):
                    key = target.child_by_field_name("property") or \
                        target.child_by_field_name("index")
                    if key is not None and WALLET_KEY.match(_name(key).strip("'\"`")):
                        # o.mnemonic = m: o now carries key material
                        t = Taint("wallet", _name(key).strip("'\"`"), target.start_point[0] + 1)
                if t is not None:
                    self.scopes.tainted.setdefault((self._declared_scope(name, scope), name), t)
            for scope, call in self.calls:
                self._call_flow(scope, call)
            if len(self.scopes.tainted) == before:
                break

    def _call_flow(self, scope: int, call: ts.Node) -> None:
        _, name = self.callee(call)
        args = call.child_by_field_name("arguments")
        arglist = list(args.named_children) if args is not None else []
        fn = call.child_by_field_name("function")
        _, receiver = _last(fn)
        src = self.source(call)
        if src is None and name == "then" and receiver is not None:
            src = self.taint_in(receiver, scope)
        if src is not None:  # callbacks of a source see its data
            for arg in arglist:
                if arg.type in FUNCTION_TYPES:
                    for p in self._params(arg):
                        self.scopes.tainted.setdefault((arg.id, p), src)
        tainted_args = [(i, self.taint_in(a, scope)) for i, a in enumerate(arglist)]
        if name in ("push", "unshift", "assign", "set", "append", "concat") and receiver is not None:
            owner = _root(receiver)
            if owner == "Object" and name == "assign" and arglist:
                owner = _root(arglist[0])  # Object.assign(target, …) fills its target
            for _, t in tainted_args:
                if t is not None and owner and owner not in BUILTINS:
                    self.scopes.tainted.setdefault((self._declared_scope(owner, scope), owner), t)
        if receiver is None and name in self.functions:
            params = self.functions[name]
            for i, t in tainted_args:
                if t is not None and i < len(params) and params[i].type == "identifier":
                    fscope = self.scope_of(params[i])
                    self.scopes.tainted.setdefault((fscope, _name(params[i])), t)

    def _params(self, fn: ts.Node) -> list[str]:
        params = fn.child_by_field_name("parameters") or fn.child_by_field_name("parameter")
        if params is None:
            return []
        if params.type == "identifier":
            return [_name(params)]
        return [_name(p) for p in params.named_children if p.type == "identifier"]

    def chains(self) -> list[Chain]:
        found: list[Chain] = []
        for scope, call in self.calls:
            sink = self.sink(call, scope)
            if sink is None:
                continue
            kind, what = sink
            args = call.child_by_field_name("arguments")
            parts: list[ts.Node | None] = [args]
            if kind == "write":  # what is written, not where: a path from HOME is no leak
                parts = list(args.named_children[1:]) if args is not None else []
            if kind == "network":  # a fingerprint in the host name or URL of the receiver
                fn = call.child_by_field_name("function")
                parts.append(_last(fn)[1])
            for part in parts:
                if part is None:
                    continue
                t = self.taint_in(part, scope)
                if t is not None and kind == "exec" and t.what == "process.env" \
                        and t.transform is None:
                    # a command picked from the environment as a whole (PATH, COMSPEC, SHELL
                    # lookups of spawn helpers) is how commands are found, not a leak: a
                    # secret-named key, or the environment serialised or encoded, still is
                    t = None
                if t is not None:
                    found.append(Chain(t, what, kind, call.start_point[0] + 1, call.start_byte,
                                       call.end_byte - call.start_byte, t.transform))
                    break
        return found


#: The node kinds the analysis reads; the rest of the tree is only their context.
_COLLECTED = ("variable_declarator", "assignment_expression", "augmented_assignment_expression",
              "call_expression", "new_expression", "import_statement", *sorted(FUNCTION_TYPES))


@lru_cache(maxsize=4)
def _collect_query(lang: str) -> ts.Query:
    language = jsast.language(lang)
    kinds = [k for k in _COLLECTED if language.id_for_node_kind(k, True) is not None]
    return ts.Query(language, "[" + " ".join(f"({k})" for k in kinds) + "] @n")


def _collect(tree: ts.Tree, lang: str) -> list[ts.Node]:
    return jsast.captures(_collect_query(lang), tree.root_node).get("n", [])


def _returned(fn: ts.Node) -> list[ts.Node]:
    """What a function returns: an arrow's expression body, or the values of its own return
    statements (not those of functions nested in it); at most MAX_SUBTREE nodes are visited."""
    body = fn.child_by_field_name("body")
    if body is None:
        return []
    if body.type != "statement_block":
        return [body]
    out: list[ts.Node] = []
    stack = list(reversed(body.named_children))
    seen = 0
    while stack and seen < MAX_SUBTREE:
        cur = stack.pop()
        seen += 1
        if cur.type in FUNCTION_TYPES:
            continue
        if cur.type == "return_statement":
            out.extend(cur.named_children)
            continue
        stack.extend(reversed(cur.named_children))
    return out


def _descendants(node: ts.Node, limit: int) -> list[ts.Node]:
    """Nodes of an expression, leaving out ``env: …`` options (a child given our environment is
    not the environment sent anywhere) and function bodies (a function is not its data)."""
    out: list[ts.Node] = []
    stack = [node]
    while stack and len(out) < limit:
        cur = stack.pop()
        if cur.type in FUNCTION_TYPES:
            continue  # also the expression itself: `const f = () => { …process.env… }` is code
        if (cur.type == "pair" and _name(cur.child_by_field_name("key")).strip("'\"") == "env") \
                or (cur.type == "shorthand_property_identifier" and _name(cur) == "env"):
            continue
        out.append(cur)
        stack.extend(reversed(cur.named_children))
    return out


def find_chains(data: bytes, path: str = "index.js") -> list[Chain]:
    """The chains of one file (the rules of chains.yml share one analysis per text)."""
    if len(data) > MAX_BYTES:
        return []
    return list(_find_chains(data, jsast.language_kind(path)))


@jsast.noting_cache(maxsize=8)
def _find_chains(data: bytes, lang: str) -> tuple[Chain, ...]:
    analysis = _Analysis(data, lang)
    if not analysis.walk():
        return ()
    # every taint starts at a source and a chain ends at a sink: without both, the passes over
    # the assignments (most of the cost in a large bundle) cannot find anything
    if not analysis.has_source(data) or not analysis.has_sink():
        return ()
    analysis.propagate()
    return tuple(analysis.chains())


def describe(chain: Chain) -> str:
    steps = [f"{chain.source.what} (line {chain.source.line})"]
    if chain.transform is not None:
        steps.append(f"{chain.transform[0]} (line {chain.transform[1]})")
    steps.append(f"{chain.sink} (line {chain.sink_line})")
    return " → ".join(steps)


@detector("behaviour_chain")
def behaviour_chain(file: PackageFile, params: dict[str, Any]) -> list[Hit]:
    """A source → (transform) → sink chain whose source and sink kinds the rule names."""
    sources = set(params.get("sources", ["secret", "host"]))
    sinks = set(params.get("sinks", ["network", "exec", "write"]))
    hits: list[Hit] = []
    for chain in find_chains(file.data, file.path):
        if chain.source.kind in sources and chain.sink_kind in sinks:
            hits.append(Hit(chain.sink_offset, chain.sink_length, describe(chain)))
    return hits


#: ``if (…)`` statements, read by the fallback detector.
_IF_QUERY = "(if_statement condition: (parenthesized_expression) @cond) @if"
#: Characters of a branch read for a destructive command.
MAX_BRANCH = 4000
_NULLISH = {"null", "undefined", "''", '""', "0", "void 0"}


@jsast.noting_cache(maxsize=4)
def _flow(data: bytes, lang: str) -> _Analysis | None:
    """The analysis with taints propagated, without needing a sink (a branch is the 'sink')."""
    analysis = _Analysis(data, lang)
    if not analysis.walk() or not analysis.has_source(data):
        return None
    analysis.propagate()
    return analysis


def _tested_name(cond: ts.Node) -> tuple[str, bool] | None:
    """The name an ``if`` tests and whether the branch runs when it is missing:
    ``!t``, ``!t.length``, ``t == null`` → (t, True); ``t``, ``t.length`` → (t, False)."""
    expr = cond.named_children[0] if cond.named_children else None
    missing = False
    if expr is not None and expr.type == "unary_expression" and _name(expr).startswith("!"):
        expr, missing = expr.child_by_field_name("argument"), True
    elif expr is not None and expr.type == "binary_expression":
        op = _name(expr.child_by_field_name("operator"))
        left, right = expr.child_by_field_name("left"), expr.child_by_field_name("right")
        if op in ("==", "===") and right is not None and _name(right) in _NULLISH:
            expr, missing = left, True
        else:
            return None
    while expr is not None and expr.type == "member_expression" and \
            _name(expr.child_by_field_name("property")) == "length":
        expr = expr.child_by_field_name("object")
    if expr is None or expr.type != "identifier":
        return None
    return _name(expr), missing


@detector("secret_fallback")
def secret_fallback(file: PackageFile, params: dict[str, Any]) -> list[Hit]:
    """A branch taken when a secret read earlier is missing (``if (!t)`` with ``t`` from
    NPM_TOKEN or ~/.npmrc, or the ``else`` of ``if (t)``) that runs what ``params['act']``
    matches: the stealer's destructive fallback, however the secret's variable is named."""
    if len(file.data) > MAX_BYTES:
        return []
    lang = jsast.language_kind(file.path)
    analysis = _flow(file.data, lang)
    if analysis is None:
        return []
    act = re.compile(str(params["act"]))
    hits: list[Hit] = []
    query = jsast.compile_query(lang, _IF_QUERY)
    if query is None:
        return []
    for _, cap in jsast.matches(query, analysis.tree.root_node):
        node, cond = cap["if"][0], cap["cond"][0]
        tested = _tested_name(cond)
        if tested is None:
            continue
        name, missing = tested
        taint = analysis._tainted(name, analysis.scope_of(cond))
        if taint is None or taint.kind != "secret" or taint.what == "process.env":
            continue
        branch = node.child_by_field_name("consequence" if missing else "alternative")
        if branch is None:
            continue
        text = _name(branch)[:MAX_BRANCH]
        if act.search(analysis.substituted(text)):
            hits.append(Hit(node.start_byte, min(node.end_byte - node.start_byte, 160),
                            f"when {taint.what} (line {taint.line}) is missing"))
    return hits
