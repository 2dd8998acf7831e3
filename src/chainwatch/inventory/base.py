"""The interface every inventory parser implements (one module per format)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import PurePosixPath
from typing import Any, Protocol

from chainwatch.model import Environment
from chainwatch.specs import redact_credentials

#: Reads a file next to the one being parsed (e.g. ``package.json``), or None.
Sibling = Callable[[str], bytes | None]


class InventoryError(ValueError):
    """A file that cannot be parsed: reported per file, the scan goes on."""


class Extractor(Protocol):
    kind: str

    def wants(self, path: PurePosixPath) -> bool:
        """Whether this parser reads the file at ``path`` (relative to the scanned root)."""
        ...

    def extract(self, source: str, data: bytes, sibling: Sibling) -> Environment:
        """Parse one file's bytes into an environment; raise InventoryError when unreadable."""
        ...


def mapping(value: object) -> dict[str, Any]:
    """A JSON/YAML object where the format wants one; ``{}`` when the file put anything else
    there (a list, a number, null): a type-confused section is read as empty, never trusted."""
    return value if isinstance(value, dict) else {}


def items(value: object) -> list[Any]:
    """A JSON/YAML array where the format wants one; ``[]`` for anything else."""
    return value if isinstance(value, list) else []


def text(value: object) -> str | None:
    """A non-empty string where the format wants one (``resolved``, ``integrity``), else None."""
    return value if isinstance(value, str) and value else None


def conflicted(data: bytes | str) -> bool:
    """Whether a lockfile holds unresolved git merge-conflict markers."""
    raw = data.encode() if isinstance(data, str) else data
    return b"\n<<<<<<< " in b"\n" + raw or b"\n>>>>>>> " in raw


def json_object(data: bytes | str, what: str) -> dict[str, Any]:
    """Parse JSON that must be an object; a clear InventoryError otherwise."""
    try:
        doc = json.loads(data)
    except ValueError as exc:
        if conflicted(data):
            raise InventoryError("has unresolved git merge conflict markers (<<<<<<<): "
                                 "resolve the conflict and regenerate it") from exc
        raise InventoryError(f"not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise InventoryError("JSON nested too deeply") from exc
    if not isinstance(doc, dict):
        raise InventoryError(f"{what} is not a JSON object")
    return doc


def split_spec(spec: str) -> tuple[str, str]:
    """``@scope/name@range`` → (``@scope/name``, ``range``), split at the first ``@`` after
    position 0: a name holds no ``@`` but its scope's, while a range may (``git+ssh://git@host/…``,
    ``https://token@host/…``)."""
    at = spec.find("@", 1)
    if at <= 0:
        return spec, ""
    return spec[:at], spec[at + 1 :]


def redact(value: str) -> str:
    """Every URL's and scp-like spec's userinfo replaced by ``***`` (see ``specs``)."""
    return redact_credentials(value)


def redact_optional(value: str | None) -> str | None:
    return None if value is None else redact(value)


def redact_environment(env: Environment) -> Environment:
    """``env`` with every name, version (a spec, for package.json), resolved URL, path step,
    error and the source redacted."""
    return dataclasses.replace(
        env, id=redact(env.id), source=redact(env.source), errors=tuple(redact(e) for e in env.errors),
        packages=tuple(dataclasses.replace(
            p, name=redact(p.name), version=redact(p.version),
            resolved=redact_optional(p.resolved),
            paths=tuple(tuple(redact(step) for step in path) for path in p.paths))
            for p in env.packages))


def valid_name(name: str) -> bool:
    """An npm package name's shape: ``name`` or ``@scope/name``, no spaces, hosts or protocols."""
    if not name or len(name) > 214 or name != name.strip() or ":" in name or "\\" in name:
        return False
    parts = name.split("/")
    if name.startswith("@"):
        return len(parts) == 2 and len(parts[0]) > 1 and bool(parts[1]) and "@" not in parts[1]
    return len(parts) == 1 and "@" not in name and not name.startswith(".")


def manifest_deps(manifest: dict[str, object]) -> list[tuple[str, str, str]]:
    """(name, range, kind) for a package.json's declared dependencies."""
    out: list[tuple[str, str, str]] = []
    for key, kind in (("dependencies", "prod"), ("devDependencies", "dev"),
                      ("optionalDependencies", "optional"), ("peerDependencies", "peer")):
        block = manifest.get(key)
        if isinstance(block, dict):
            out.extend((str(k), str(v), kind) for k, v in block.items())
    return out
