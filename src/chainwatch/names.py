"""npm package names: what the registry accepts today (lower case, optional scope)."""

from __future__ import annotations

import re

_NAME = re.compile(r"^(?:@[a-z0-9~][a-z0-9._~-]*/)?[a-z0-9~][a-z0-9._~-]*$")


def valid_package_name(name: str) -> bool:
    return len(name) <= 214 and bool(_NAME.match(name))
