"""Whether one version of an upstream packument can be served through the proxy at all.

A version is hidden (and its tarball refused) with a reason when the proxy could not hand the
client a URL through itself, or the client could not check the bytes it gets: no ``dist``
object, no tarball URL, a tarball on a host the proxy does not fetch from, no usable checksum,
or a version string npm would not accept.
"""

from __future__ import annotations

import re
from typing import Any

from chainwatch.gate.egress import Egress
from chainwatch.registry.cache import ambiguous_integrity, sri_to_hex
from chainwatch.versions import parse

_HEX40 = re.compile(r"^[0-9a-fA-F]{40}$")
#: What a version may look like in a URL path the proxy serves (semver allows no more).
_VERSION_CHARS = re.compile(r"^[0-9A-Za-z.+-]+$")


def unservable(version: str, data: Any, egress: Egress) -> str | None:
    """Why this version cannot be served, or None."""
    if not _VERSION_CHARS.match(version) or parse(version) is None or version.startswith(("v", "=")):
        return "not a valid semver version"
    if not isinstance(data, dict):
        return "the version entry is not an object"
    dist = data.get("dist")
    if not isinstance(dist, dict):
        return "no dist object"
    tarball = dist.get("tarball")
    if not isinstance(tarball, str) or not tarball:
        return "no tarball URL"
    shasum, integrity = dist.get("shasum"), dist.get("integrity")
    if shasum is not None and not (isinstance(shasum, str) and _HEX40.match(shasum)):
        return "dist.shasum is not 40 hex digits"
    if integrity is not None and not (isinstance(integrity, str) and sri_to_hex(integrity)):
        return "dist.integrity is not a readable SRI hash"
    if isinstance(integrity, str) and ambiguous_integrity(integrity):
        return f"dist.integrity is ambiguous: {ambiguous_integrity(integrity)}"
    if shasum is None and integrity is None:
        return "no checksum (dist.integrity or dist.shasum) for the client to verify"
    return egress.refusal(tarball)
