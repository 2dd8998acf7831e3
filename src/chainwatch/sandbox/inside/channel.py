"""The one-way channel from inside the sandbox to chainwatch: ``statfs`` calls on a path that
does not exist. The host's ``strace`` records every one of them; nothing inside can erase a
record once made. Trusted senders add the run's secret token, which package code never sees."""

from __future__ import annotations

import base64
import contextlib
import json
import os
from typing import Any

#: Path components are at most 255 bytes; a whole path at most 4095.
_PART = 200
_MAX_B64 = 3600


def encode(prefix: str, record: dict[str, Any]) -> str:
    data = base64.urlsafe_b64encode(json.dumps(record, separators=(",", ":")).encode()).decode()
    data = data[:_MAX_B64].rstrip("=")
    parts = [data[i:i + _PART] for i in range(0, len(data), _PART)] or ["e30"]
    return prefix.rstrip("/") + "/" + "/".join(parts)


def send(prefix: str, record: dict[str, Any]) -> None:
    # the path never exists: the call itself is the message
    with contextlib.suppress(OSError):
        os.statvfs(encode(prefix, record))
