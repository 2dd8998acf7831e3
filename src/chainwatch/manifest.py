"""A package's own ``package.json``, parsed once under the limits hostile input needs.

Everything a scan reads from the manifest (name, version, scripts, dependencies, entry points)
comes from one :class:`Manifest`, built here and carried by ``PackageFiles``. A manifest that
cannot be read the way a consumer would (too large, nested too deep, not JSON, not an object)
raises :class:`ManifestError` (exit 2), never a traceback; a field of the wrong type is treated
as absent, as npm does, and noted in ``Manifest.problems``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from chainwatch.errors import UsageError

#: Larger package.json files are refused before they are parsed (real ones are a few KB; the
#: largest on the registry are well below 1 MiB).
MAX_MANIFEST_BYTES = 2 * 1024 * 1024
#: Deeper nesting of arrays and objects is refused (real manifests nest 5 or 6 levels).
MAX_MANIFEST_DEPTH = 64
#: Lifecycle scripts npm runs at install or uninstall time.
INSTALL_HOOKS = ("preinstall", "install", "postinstall", "prepare", "preuninstall",
                 "postuninstall")

class ManifestError(UsageError):
    """A package.json that chainwatch will not read (exit 2)."""


def nesting_depth(doc: object, stop: int = MAX_MANIFEST_DEPTH) -> int:
    """How deeply arrays and objects nest in a parsed JSON document, walked level by level
    without recursion; the walk ends as soon as it passes ``stop``."""
    level = [doc] if type(doc) in (dict, list) else []
    depth = 0
    while level:
        depth += 1
        if depth > stop:
            return depth
        below: list[object] = []
        for value in level:
            for child in (value.values() if type(value) is dict else value):  # type: ignore[attr-defined]
                kind = type(child)
                if kind is dict or kind is list:
                    below.append(child)
        level = below
    return depth


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
    try:
        # the C parser guards its own recursion: nesting past the interpreter's limit is a
        # RecursionError here, at once, and never reaches the code that reads the value
        doc = json.loads(data)
    except RecursionError as exc:
        raise ManifestError(f"{where} is nested more than {MAX_MANIFEST_DEPTH} levels deep "
                            "(too deep to parse)") from exc
    except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError both
        raise ManifestError(f"{where} is not valid JSON: {str(exc)[:200]}") from exc
    if not isinstance(doc, dict):
        raise ManifestError(f"{where} is a JSON {type(doc).__name__}, not an object")
    if nesting_depth(doc) > MAX_MANIFEST_DEPTH:
        # what passed the parser is still refused before any reader walks it recursively
        raise ManifestError(f"{where} is nested more than {MAX_MANIFEST_DEPTH} levels deep")
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
