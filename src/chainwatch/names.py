"""npm package names: what the registry accepts today (lower case, optional scope)."""

from __future__ import annotations

import re

_NAME = re.compile(r"^(?:@[a-z0-9~][a-z0-9._~-]*/)?[a-z0-9~][a-z0-9._~-]*$")


def valid_package_name(name: str) -> bool:
    return len(name) <= 214 and bool(_NAME.match(name))


#: npm refuses longer names; a longer one is refused before any lookup.
MAX_NAME_LENGTH = 214
#: Names the registry reserves (validate-npm-package-name's blacklist).
_RESERVED = frozenset({"node_modules", "favicon.ico"})
#: What ``encodeURIComponent`` leaves alone: a name or scope made of these needs no escaping.
_URL_SAFE = re.compile(r"^[A-Za-z0-9\-_.!~*'()]+$")
_SCOPED = re.compile(r"^@([^/]+?)/([^/]+?)$")


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot name an npm package, or None when it can.

    The rules of validate-npm-package-name for packages that may already exist (so upper case,
    as in ``JSONStream``, is allowed), plus a length bound: a name from a stranger is checked
    before it becomes a registry URL."""
    if not name:
        return "the name is empty"
    if len(name) > MAX_NAME_LENGTH:
        return f"the name is longer than {MAX_NAME_LENGTH} characters"
    if name.strip() != name:
        return "the name has leading or trailing spaces"
    if name.startswith("."):
        return "the name starts with a period"
    if name.startswith("_"):
        return "the name starts with an underscore"
    if name.lower() in _RESERVED:
        return f"{name!r} is reserved"
    if name.startswith("@"):
        scoped = _SCOPED.match(name)
        if scoped is None:
            return "a scoped name is @scope/name, with one '/' and neither part empty"
        scope, bare = scoped.groups()
        if not (_URL_SAFE.match(scope) and _URL_SAFE.match(bare)):
            return "the name has characters that are not URL-safe"
        return None
    if not _URL_SAFE.match(name):
        return "the name has characters that are not URL-safe"
    return None


def split_spec(spec: str) -> tuple[str, str | None]:
    """``name@wanted`` split at the first ``@`` after the first character (as npm does, so
    ``@scope/name@^1`` and ``name@npm:other@1`` split right); ``wanted`` is None without one."""
    at = spec.find("@", 1)
    if at < 0:
        return spec, None
    return spec[:at], spec[at + 1:]
