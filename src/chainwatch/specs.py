"""What a dependency spec in ``package.json`` asks npm to fetch, and from where.

A registry spec (``^1.2.0``, ``latest``, ``npm:other@1``) is fetched from the registry, so a
proxy or a gate sees it. Anything else (a tarball URL, a git repository, a GitHub shorthand, a
local path) is fetched around them: nothing chainwatch guards ever sees those bytes.
"""

from __future__ import annotations

import re

#: ``scheme://userinfo@``: ``git+ssh://user:token@host/…``, ``ssh://user:pass@host``,
#: ``https://token@host/…``.
_URL_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*://)[^/?#\s@]+@")
#: scp-like ``userinfo@host:path`` (``git@github.com:org/repo``, ``tok:x@gitlab.example:g/r``):
#: a host with a dot whose last label starts with a letter, or an IPv4 address, then a colon
#: and a path (never ``name@1.2.3`` or ``pkg@registry.example: an error``).
_SCP_USERINFO = re.compile(
    r"(?<![^\s\"'`(<\[{,;=+@])[^\s\"'`@/:]+(?::[^\s\"'`@/]*)?@"
    r"(?=(?:(?:[A-Za-z0-9-]+\.)+[A-Za-z][A-Za-z0-9-]*|\d{1,3}(?:\.\d{1,3}){3}):[^\s\d:])")

#: query parameters that carry a credential (``?token=…``, ``&access_token=…``, ``?sig=…``).
_QUERY_SECRET = re.compile(
    r"([?&;](?:[A-Za-z0-9_.\-]*(?:token|auth|key|secret|password|passwd|pwd|sig|signature|"
    r"credential|session)[A-Za-z0-9_.\-]*)=)[^&#\s\"'`]+", re.IGNORECASE)

_URL_PREFIXES = ("http:", "https:", "git:", "git+", "git@", "ssh:", "github:", "gitlab:",
                 "bitbucket:", "gist:", "file:", "link:")
#: scp-like ``user@host.tld:path``: npm-package-arg reads it as a git repository (its isGit).
_SCP_GIT = re.compile(r"^[^@]+@[^:.]+\.[^:]+:.+$")
#: ``user/repo`` or ``user/repo#ref``: npm reads it as a GitHub repository.
_SHORTHAND = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9_.-]+(?:#.*)?$")


def redact_credentials(text: str) -> str:
    """``text`` with the userinfo of every URL and scp-like git spec in it, and the value of
    every query parameter named like a credential, replaced by ``***`` (``https://tok@h/x`` →
    ``https://***@h/x``, ``git@h:o/r`` → ``***@h:o/r``, ``?token=abc`` → ``?token=***``): the one place
    that decides what a credential in a spec looks like. Every output that can show a spec,
    a resolved URL or an error quoting one goes through it."""
    if "=" in text:
        text = _QUERY_SECRET.sub(r"\1***", text)
    if "@" not in text:
        return text
    return _SCP_USERINFO.sub("***@", _URL_USERINFO.sub(r"\1***@", text))


def off_registry(spec: str) -> str | None:
    """Where npm would fetch ``spec`` from when that is not the registry, else None (with its
    credentials redacted: this is shown to people)."""
    text = spec.strip()
    lowered = text.lower()
    for prefix in _URL_PREFIXES:
        if lowered.startswith(prefix):
            return redact_credentials(text)[:200]
    if _SCP_GIT.match(text):
        return redact_credentials(text)[:200]
    if _SHORTHAND.match(text):
        return f"github:{redact_credentials(text)[:200]}"
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
