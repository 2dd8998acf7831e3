"""binding.gyp: the commands node-gyp runs at install, read without running anything.

npm runs ``node-gyp rebuild`` for a package that has a ``binding.gyp`` at its root and no
``install``/``preinstall`` script of its own. node-gyp (gyp) then runs every command expansion
(``<!(cmd)``, ``<!@(cmd)``) while it reads the file and every ``action`` of every target while
it builds: install-time code execution with no script in package.json.

A .gyp file is a Python literal (dicts, lists, strings, ``#`` comments). It is read with
:func:`ast.literal_eval`, which builds literals only and never evaluates names or calls, on
at most ``MAX_GYP_BYTES`` of text; nesting beyond the parser's own limit is a parse error. The
command expansions are also found by a pattern over the raw text, so a file that does not
parse (gyp's own reader is laxer) still yields its commands.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

MAX_GYP_BYTES = 512 * 1024
MAX_GYP_COMMANDS = 32
MAX_DEPTH = 32
#: Characters the expansion finder looks at in all, whatever the file holds.
SCAN_BUDGET = 256 * 1024

_EXPANSION = re.compile(r"<!@?\(")
#: ``<!pymod_do_main(module args)``: gyp imports module.py (from the .gyp's folder) and runs it
_PYMOD = re.compile(r"<!@?pymod_do_main\(\s*([\w.]{1,100})")
MAX_GYP_INCLUDES = 8
#: The idioms of nearly every native addon: ask node for an include folder, or pkg-config.
#: The query must name a *package* (``require('node-addon-api')``, ``require('nan')``): a
#: relative or absolute path (``require('./src/paths')``) runs a file of the package itself.
_ROUTINE = re.compile(
    r"""^\s*(node|"?\$\{?node\}?"?)\s+(-p|-e|--print|--eval)\s+\\?["']\s*require\(\s*\\?["']"""
    r"""(?![^"'\\]*\.\.)[\w@][\w@./-]{0,99}\\?["']\s*\)(\s*\.\s*\w+){0,3}\s*\\?["']\s*$"""
    r"""|^\s*(node|"?\$\{?node\}?"?)\s+(-p|--print)\s+\\?["']\s*process\s*\.\s*(versions|platform|arch)"""
    r"""[\w.\[\]()\\"' ]{0,80}\\?["']\s*$"""
    r"""|^\s*pkg-config\s+(--[\w-]+\s+)*[\w.+ -]{1,100}$"""
    r"""|^\s*(python3?|node)\s+-c\s+["']import\s+\w+(\.\w+)*\s*;\s*print\([^)]{0,120}\)\s*["']\s*$"""
)


@dataclass(frozen=True)
class GypCommand:
    command: str
    #: "expansion" (<!(…), run while the file is read), "action" (run while building) or
    #: "unread" (the file holds more than the reader's budget)
    kind: str
    offset: int

    @property
    def routine(self) -> bool:
        """A well-known include-folder or pkg-config query, not worth a finding alone."""
        return self.kind == "expansion" and bool(_ROUTINE.match(self.command))


def _expansions(text: str) -> list[GypCommand]:
    """Command expansions found in the raw text, balanced parentheses and quotes respected."""
    out: list[GypCommand] = []
    budget = SCAN_BUDGET  # characters looked at in all: unclosed expansions cost no more
    for m in _EXPANSION.finditer(text):
        depth, i, quote = 1, m.end(), ""
        if budget <= 0:  # fail closed: what was not read is reported, not ignored
            out.append(GypCommand("(more command expansions than chainwatch reads)",
                                  "unread", m.start()))
            break
        stop = min(len(text), m.end() + min(2000, budget))
        while i < stop and depth:
            c = text[i]
            if quote:
                quote = "" if c == quote and text[i - 1] != "\\" else quote
            elif c in "\"'" and text[i - 1] != "\\":
                quote = c
            elif c == "(":
                depth += 1
            elif c == ")":
                depth -= 1
            i += 1
        budget -= i - m.end()
        if depth == 0:
            out.append(GypCommand(text[m.end(): i - 1].strip(), "expansion", m.start()))
        if len(out) >= MAX_GYP_COMMANDS:
            break
    return out


def _dicts(doc: Any, enough: Callable[[], bool]) -> Iterator[dict[Any, Any]]:
    """Every dict in a parsed .gyp, depth-first, at most MAX_DEPTH deep, until ``enough()``."""
    stack: list[tuple[Any, int]] = [(doc, 0)]
    while stack and not enough():
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            continue
        if isinstance(node, dict):
            yield node
            children = list(node.values())
        elif isinstance(node, list):
            children = node
        else:
            continue
        stack.extend((child, depth + 1) for child in reversed(children))


def _literal(text: str) -> Any:
    """A .gyp read as the Python literal it is (never evaluated), None when it is not one."""
    try:
        return ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None


def _actions(doc: Any, text: str) -> list[GypCommand]:
    out: list[GypCommand] = []
    for node in _dicts(doc, lambda: len(out) >= MAX_GYP_COMMANDS):
        action = node.get("action")
        if isinstance(action, list) and action and all(isinstance(a, str) for a in action):
            out.append(GypCommand(" ".join(action), "action", max(text.find(action[0]), 0)))
        elif isinstance(action, str) and action.strip():
            out.append(GypCommand(action, "action", max(text.find(action), 0)))
    return out


def parse_gyp(data: bytes) -> list[GypCommand]:
    """Commands a binding.gyp makes node-gyp run: expansions first, then actions."""
    text = data[:MAX_GYP_BYTES].decode("utf-8", "replace")
    commands = _expansions(text)
    seen = {c.command for c in commands}
    for action in _actions(_literal(text), text):
        if action.command not in seen and len(commands) < MAX_GYP_COMMANDS:
            seen.add(action.command)
            commands.append(action)
    return [c for c in commands if c.command.strip()]


_ESCAPE = re.compile(r"\\(.)", re.S)
_ESCAPES = {"\\": "\\", "'": "'", '"': '"', "n": "\n", "t": "\t", "\n": ""}


def as_run(command: GypCommand) -> str:
    """The command as gyp runs it. A .gyp is a Python literal, so the text between its quotes
    is unescaped first (``\\"`` is ``"``): run as written, ``node -p \\"require('./x')\\"``
    would print a string instead of running ``x.js``. gyp runs an expansion with ``sh -c`` in
    the .gyp's folder."""
    if command.kind != "expansion":
        return command.command
    return _ESCAPE.sub(lambda m: _ESCAPES.get(m.group(1), m.group(0)), command.command)


def gyp_named_files(data: bytes) -> tuple[list[str], list[str]]:
    """(included .gypi files, Python modules imported by pymod_do_main) that a .gyp names.

    Both run at install: an include's own expansions and actions are read like binding.gyp's,
    a pymod module is Python that gyp imports. Paths are as written (the caller resolves them
    inside the package)."""
    text = data[:MAX_GYP_BYTES].decode("utf-8", "replace")
    modules = [m.group(1).replace(".", "/") + ".py" for m in _PYMOD.finditer(text)]
    includes: list[str] = []
    doc = _literal(text)
    for node in _dicts(doc, lambda: len(includes) >= MAX_GYP_INCLUDES):
        inc = node.get("includes")
        if isinstance(inc, list):
            includes.extend(i for i in inc if isinstance(i, str))
    if doc is None:  # gyp's reader is laxer: the include names from the raw text
        for m in re.finditer(r"""['"]includes['"]\s*:\s*\[([^\]]{0,2000})\]""", text):
            includes.extend(re.findall(r"""['"]([^'"]{1,200}\.gypi?)['"]""", m.group(1)))
    return includes[:MAX_GYP_INCLUDES], modules[:MAX_GYP_INCLUDES]
