"""A package's own ``package.json``, parsed once under the limits hostile input needs.

Everything a scan reads from the manifest (name, version, scripts, dependencies, entry points)
comes from one :class:`Manifest`, built here and carried by ``PackageFiles``. A manifest that
cannot be read the way a consumer would (too large, nested too deep, not JSON, not an object)
raises :class:`ManifestError` (exit 2), never a traceback; a field of the wrong type is treated
as absent, as npm does, and noted in ``Manifest.problems``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import accumulate
from types import MappingProxyType
from typing import Any

from chainwatch.errors import UsageError

#: Larger package.json files are refused before they are parsed (real ones are a few KB; the
#: largest on the registry are well below 1 MiB).
MAX_MANIFEST_BYTES = 2 * 1024 * 1024
#: Deeper nesting of arrays and objects is refused before ``json.loads`` recurses into it.
MAX_MANIFEST_DEPTH = 64
#: Lifecycle scripts npm runs at install or uninstall time.
INSTALL_HOOKS = ("preinstall", "install", "postinstall", "prepare", "preuninstall",
                 "postuninstall")

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_OPEN = frozenset(b"[{")
_CLOSE = frozenset(b"]}")


class ManifestError(UsageError):
    """A package.json that chainwatch will not read (exit 2)."""


def nesting_depth(data: bytes) -> int:
    """The deepest nesting of arrays and objects in JSON text, strings left out; linear time
    and no recursion, so it can be asked before a recursive parser sees the text."""
    brackets = _STRING.sub(b"", data).translate(None, bytes(
        b for b in range(256) if b not in _OPEN and b not in _CLOSE))
    steps = (1 if b in _OPEN else -1 for b in brackets)
    return max(accumulate(steps, initial=0))


def _strings(value: object) -> dict[str, str] | None:
    """A mapping of strings to strings, or None when ``value`` is not one (wrong type)."""
    if not isinstance(value, dict):
        return None
    return {k: v for k, v in value.items() if isinstance(v, str)}


@dataclass(frozen=True)
class Manifest:
    """What the package says of itself, typed. ``raw`` is the parsed document (read-only)."""

    present: bool = False
    name: str | None = None
    version: str | None = None
    main: str | None = None
    scripts: Mapping[str, str] = field(default_factory=dict)
    dependencies: Mapping[str, str] = field(default_factory=dict)
    optional_dependencies: Mapping[str, str] = field(default_factory=dict)
    raw: Mapping[str, Any] = field(default_factory=dict)
    #: Fields of the wrong type, treated as absent ("scripts is not an object").
    problems: tuple[str, ...] = ()

    @property
    def lifecycle_scripts(self) -> dict[str, str]:
        """The install-time hooks among the scripts."""
        return {k: v for k, v in self.scripts.items() if k in INSTALL_HOOKS}

    @property
    def runtime_dependencies(self) -> dict[str, str]:
        """dependencies and optionalDependencies together (what an install fetches)."""
        return {**self.dependencies, **self.optional_dependencies}


NO_MANIFEST = Manifest()


def parse_manifest(data: bytes, where: str = "package.json") -> Manifest:
    """Parse a package.json under limits; :class:`ManifestError` when it cannot be read."""
    if len(data) > MAX_MANIFEST_BYTES:
        raise ManifestError(f"{where} is {len(data)} bytes, more than the "
                            f"{MAX_MANIFEST_BYTES} chainwatch reads")
    depth = nesting_depth(data)
    if depth > MAX_MANIFEST_DEPTH:
        raise ManifestError(f"{where} is nested {depth} levels deep, more than the "
                            f"{MAX_MANIFEST_DEPTH} chainwatch reads")
    try:
        doc = json.loads(data)
    except RecursionError as exc:  # not reached after the depth check; kept as a backstop
        raise ManifestError(f"{where} is nested too deeply to read") from exc
    except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError both
        raise ManifestError(f"{where} is not valid JSON: {str(exc)[:200]}") from exc
    if not isinstance(doc, dict):
        raise ManifestError(f"{where} is a JSON {type(doc).__name__}, not an object")
    problems: list[str] = []

    def text(key: str) -> str | None:
        value = doc.get(key)
        if value is None or isinstance(value, str):
            return value
        problems.append(f"{key} is not a string")
        return None

    def mapping(key: str) -> dict[str, str]:
        value = doc.get(key)
        if value is None:
            return {}
        found = _strings(value)
        if found is None:
            problems.append(f"{key} is not an object")
            return {}
        if len(found) != len(value):
            problems.append(f"{key} has values that are not strings")
        return found

    return Manifest(
        present=True, name=text("name"), version=text("version"), main=text("main"),
        scripts=MappingProxyType(mapping("scripts")),
        dependencies=MappingProxyType(mapping("dependencies")),
        optional_dependencies=MappingProxyType(mapping("optionalDependencies")),
        raw=MappingProxyType(doc), problems=tuple(problems))
