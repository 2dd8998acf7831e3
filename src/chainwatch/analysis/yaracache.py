"""Compiled YARA rule sets kept in the user cache dir, keyed by a hash of their source.

Compiling is cheap next to analysis, but every process (each ``chainwatch`` run and each
worker) compiled every rule set again. A saved set is used only when all of this holds, else
the source is compiled (and saved again):

* its name is the sha256 of the YARA version and the exact source, so edited rules, user rule
  folders and another YARA never read a stale set;
* it is a regular file of at most MAX_BYTES, owned by this user and writable by no one else
  (another local account cannot plant one in a shared or misconfigured cache dir);
* its body matches the sha256 written before it (a truncated or corrupted file is not given to
  YARA's loader);
* it loads, and holds exactly the rule names the source defines.

At most MAX_FILES sets are kept. ``CHAINWATCH_YARA_CACHE=0`` turns it off.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import stat
import tempfile
from pathlib import Path

import yara

log = logging.getLogger(__name__)

MAGIC = b"chainwatch-yara/1\n"
MAX_BYTES = 64 * 1024 * 1024
#: Saved sets kept (edited rules and user rule folders leave old ones): the oldest go first.
MAX_FILES = 32
_RULE_NAME = re.compile(r"^rule\s+(\w+)", re.MULTILINE)


def _folder() -> Path | None:
    if os.environ.get("CHAINWATCH_YARA_CACHE", "1") == "0":
        return None
    from chainwatch.paths import cache_dir

    return cache_dir() / "yara"


def source_key(source: str) -> str:
    h = hashlib.sha256(f"yara {yara.YARA_VERSION} yara-python {yara.__version__}\n".encode())
    h.update(source.encode("utf-8", "surrogatepass"))
    return h.hexdigest()


def _read(path: Path) -> bytes | None:
    """The saved body, when the file is one we may trust to be ours and whole."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if (not stat.S_ISREG(st.st_mode) or st.st_size > MAX_BYTES
                or (hasattr(os, "getuid") and st.st_uid != os.getuid())
                or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)):
            return None
        raw = fh.read(MAX_BYTES + 1)
    head = len(MAGIC) + 64
    if len(raw) <= head or not raw.startswith(MAGIC):
        return None
    body = raw[head:]
    if hashlib.sha256(body).hexdigest().encode() != raw[len(MAGIC):head]:
        return None
    return body


def _write(folder: Path, path: Path, rules: yara.Rules) -> None:
    buf = io.BytesIO()
    rules.save(file=buf)
    body = buf.getvalue()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".yarc")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(MAGIC + hashlib.sha256(body).hexdigest().encode() + body)
        os.replace(tmp, path)
    except OSError:
        Path(tmp).unlink(missing_ok=True)
        raise
    saved = sorted(folder.glob("*.yarc"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in saved[MAX_FILES:]:
        old.unlink(missing_ok=True)


def compiled(source: str) -> yara.Rules:
    """The rule set of ``source``: loaded from the cache when a sound copy is there, else
    compiled (and saved for the next process)."""
    folder = _folder()
    if folder is None:
        return yara.compile(source=source)
    path = folder / f"{source_key(source)}.yarc"
    body = _read(path)
    if body is not None:
        try:
            rules = yara.load(file=io.BytesIO(body))
            if {r.identifier for r in rules} == set(_RULE_NAME.findall(source)):
                return rules
        except yara.Error:
            pass
        log.debug("saved YARA rules at %s do not match their source: compiling", path)
    rules = yara.compile(source=source)
    try:
        _write(folder, path, rules)
    except OSError as exc:  # a read-only or full cache dir costs speed, nothing else
        log.debug("cannot save compiled YARA rules to %s: %s", folder, exc)
    return rules
