"""bun.lock (text, JSONC) of bun 1.1+; the binary bun.lockb is not read."""

from __future__ import annotations

import json
import re
from pathlib import PurePosixPath
from typing import Any

from chainwatch.inventory.base import (
    InventoryError,
    Sibling,
    mapping,
    split_spec,
    text,
    valid_name,
)
from chainwatch.inventory.graph import Graph, Node
from chainwatch.model import Environment

#: A JSON string (kept), a comment (dropped, an unterminated block comment to the end) or a
#: trailing comma before ``]``/``}`` (dropped): one pass in the regex engine.
_JSONC = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|//[^\n]*|/\*.*?(?:\*/|\Z)|,(?=[ \t\r\n]*[\]}])',
                    re.S)


def strip_jsonc(text: str) -> str:
    """Remove comments and trailing commas outside strings, in one regex pass (a 10.6 MB
    bun.lock: 0.26 s and 66 MB peak, against 1.0 s and 100 MB for the character loop this
    replaced)."""
    return _JSONC.sub(lambda m: m.group(0) if m.group(0).startswith('"') else "", text)


def _key_parts(key: str) -> list[str]:
    """``a/@s/b/c`` → [``a``, ``@s/b``, ``c``]: package names along a nested key."""
    parts = key.split("/")
    names: list[str] = []
    i = 0
    while i < len(parts):
        if parts[i].startswith("@") and i + 1 < len(parts):
            names.append(f"{parts[i]}/{parts[i + 1]}")
            i += 2
        else:
            names.append(parts[i])
            i += 1
    return names


class BunLockExtractor:
    kind = "bun"

    def wants(self, path: PurePosixPath) -> bool:
        return path.name == "bun.lock"

    def extract(self, source: str, data: bytes, sibling: Sibling) -> Environment:
        try:
            doc = json.loads(strip_jsonc(data.decode("utf-8", errors="replace")))
        except ValueError as exc:
            raise InventoryError(f"not valid JSONC: {exc}") from exc
        except RecursionError as exc:
            raise InventoryError("JSONC nested too deeply") from exc
        if not isinstance(doc, dict) or not isinstance(doc.get("packages"), dict):
            raise InventoryError("no 'packages' object in bun.lock")
        packages: dict[str, Any] = doc["packages"]
        graph = Graph()
        for key, value in packages.items():
            if not isinstance(value, list) or not value or not isinstance(value[0], str):
                # a malformed entry is this entry's error, never a package named 123 or {}
                graph.errors.append(f"packages[{str(key)[:120]!r}]: not a [\"name@version\", …] "
                                    "entry (skipped)")
                continue
            name, version = split_spec(value[0])
            if version.startswith(("workspace:", "link:", "file:")):
                continue
            if not valid_name(name) or not version:
                graph.errors.append(f"packages[{str(key)[:120]!r}]: {value[0][:120]!r} is not "
                                    "name@version (skipped)")
                continue
            integrity = text(value[3]) if len(value) > 3 else None
            graph.add(key, Node(name, version.removeprefix("npm:"),
                                text(value[1]) if len(value) > 1 else None, integrity))

        def find(owner: str, dep: str) -> str | None:
            names = _key_parts(owner) if owner else []
            for cut in range(len(names), -1, -1):
                candidate = "/".join([*names[:cut], dep])
                if candidate in graph.nodes:
                    return candidate
            return None

        for key, value in packages.items():
            if key not in graph.nodes or len(value) < 3 or not isinstance(value[2], dict):
                continue
            meta = value[2]
            for section, optional in (("dependencies", False), ("optionalDependencies", True),
                                      ("peerDependencies", True)):
                for dep in mapping(meta.get(section)):
                    child = find(key, str(dep))
                    if child:
                        graph.edge(key, child, optional)
        workspaces = mapping(doc.get("workspaces"))
        for path, ws in workspaces.items():
            if not isinstance(ws, dict):
                continue
            label = str(ws.get("name") or path or "(root)")
            for section, kind in (("dependencies", "prod"), ("devDependencies", "dev"),
                                  ("optionalDependencies", "optional"), ("peerDependencies", "peer")):
                for dep in mapping(ws.get(section)):
                    child = find(label if path else "", str(dep)) or find("", str(dep))
                    if child:
                        graph.importer(label, child, kind)
        return graph.to_environment(source, self.kind, source)
