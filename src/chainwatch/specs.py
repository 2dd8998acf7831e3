"""What a dependency spec in ``package.json`` asks npm to fetch, and from where.

A registry spec (``^1.2.0``, ``latest``, ``npm:other@1``) is fetched from the registry, so a
proxy or a gate sees it. Anything else (a tarball URL, a git repository, a GitHub shorthand, a
local path) is fetched around them: nothing chainwatch guards ever sees those bytes.
"""

from __future__ import annotations

import re

_URL_PREFIXES = ("http:", "https:", "git:", "git+", "git@", "ssh:", "github:", "gitlab:",
                 "bitbucket:", "gist:", "file:", "link:")
#: ``user/repo`` or ``user/repo#ref``: npm reads it as a GitHub repository.
_SHORTHAND = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9_.-]+(?:#.*)?$")


def off_registry(spec: str) -> str | None:
    """Where npm would fetch ``spec`` from when that is not the registry, else None."""
    text = spec.strip()
    lowered = text.lower()
    for prefix in _URL_PREFIXES:
        if lowered.startswith(prefix):
            return text[:200]
    if _SHORTHAND.match(text):
        return f"github:{text[:200]}"
    return None


def off_registry_dependencies(manifest: object) -> dict[str, str]:
    """The dependencies and optionalDependencies of a version document that npm would fetch
    from somewhere other than the registry: name → where."""
    if not isinstance(manifest, dict):
        return {}
    found: dict[str, str] = {}
    for key in ("dependencies", "optionalDependencies"):
        section = manifest.get(key)
        if not isinstance(section, dict):
            continue
        for name, spec in section.items():
            if isinstance(name, str) and isinstance(spec, str) and (where := off_registry(spec)):
                found[name] = where
    return found
