"""An environment sent as bytes (``POST /api/v1/environments``): a lockfile or a
``chainwatch.inventory/1`` document, parsed in memory under the inventory's limits.

Nothing here touches the disk: the file name only says which parser reads the body (its last
component, so ``../../x/package-lock.json`` is a ``package-lock.json`` and names nothing on the
server), and becomes the environment's source. A lockfile is read by the same parser the walker
hands it to; a document is checked field by field (names, exact versions, paths and their
number), never trusted.
"""

from __future__ import annotations

import unicodedata
from pathlib import PurePosixPath
from typing import Any

import orjson

from chainwatch.errors import UsageError
from chainwatch.inventory.base import Extractor, InventoryError, redact_environment, valid_name
from chainwatch.inventory.graph import MAX_PATHS
from chainwatch.inventory.tree_reader import MAX_PACKAGES
from chainwatch.inventory.walk import MAX_FILE_BYTES
from chainwatch.model import Environment, InstalledPackage
from chainwatch.versions import parse

#: the lockfiles an upload may be (by file name)
LOCKFILE_NAMES = ("package-lock.json", "npm-shrinkwrap.json", "yarn.lock", "pnpm-lock.yaml",
                  "bun.lock")
INVENTORY_SCHEMA = "chainwatch.inventory/1"
MAX_LABEL = 512
MAX_FILENAME = 255
#: environments in one inventory document
MAX_ENVIRONMENTS = 1_000
#: names in one dependency path (24 around an ellipsis, as ``inventory`` writes them)
MAX_PATH_STEPS = 25
MAX_VERSION = 128
MAX_SOURCE = 1_000


def _printable(value: str) -> bool:
    return not any(unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp") for c in value)


def check_label(label: object) -> str:
    """The label, stripped: 1 to 512 printable characters; UsageError otherwise."""
    if not isinstance(label, str) or not label.strip():
        raise UsageError("an environment needs a label (1 to 512 characters)")
    label = label.strip()
    if len(label) > MAX_LABEL:
        raise UsageError(f"the label is longer than {MAX_LABEL} characters")
    if not _printable(label):
        raise UsageError("the label holds control or format characters")
    return label


def upload_name(filename: object) -> str:
    """The last component of ``filename``, whichever separator it used; UsageError when
    there is none or it is not printable."""
    if not isinstance(filename, str):
        raise UsageError("the upload needs a file name")
    base = filename.replace("\\", "/").rsplit("/", 1)[-1].strip()
    if not base or base in (".", "..") or len(base) > MAX_FILENAME or not _printable(base):
        raise UsageError("the upload's file name is empty, too long or not printable")
    return base


def _extractor(name: str) -> Extractor | None:
    from chainwatch.inventory import EXTRACTORS

    if name not in LOCKFILE_NAMES:
        return None
    return next(e for e in EXTRACTORS if e.wants(PurePosixPath(name)))


def parse_upload(filename: str, body: bytes) -> list[Environment]:
    """The environments in an upload; UsageError (one line) on anything it cannot read."""
    name = upload_name(filename)
    if not isinstance(body, bytes | bytearray):
        raise UsageError("the upload is not bytes")
    if len(body) > MAX_FILE_BYTES:
        raise UsageError(f"the upload is larger than {MAX_FILE_BYTES} bytes")
    if not body.strip():
        raise UsageError(f"{name}: the upload is empty")
    extractor = _extractor(name)
    if extractor is not None:
        try:
            env = extractor.extract(name, bytes(body), lambda _sibling: None)
        except InventoryError as exc:
            raise UsageError(f"{name}: {exc}") from exc
        except (UnicodeError, RecursionError, MemoryError) as exc:
            raise UsageError(f"{name}: cannot parse ({type(exc).__name__})") from exc
        except Exception as exc:  # a parser bug or a bomb is this upload's error, one line
            raise UsageError(f"{name}: cannot parse ({type(exc).__name__})") from exc
        if env.errors and not env.packages:
            raise UsageError(f"{name}: {env.errors[0]}")
        return [redact_environment(env)]
    head = bytes(body[:4096]).lstrip()
    if head[:1] == b"{" and INVENTORY_SCHEMA.encode() in bytes(body[:65536]):
        return [redact_environment(e) for e in _inventory(name, bytes(body))]
    raise UsageError(f"{name}: not a lockfile ({', '.join(LOCKFILE_NAMES)}) or a "
                     f"{INVENTORY_SCHEMA} document")


def _inventory(name: str, body: bytes) -> list[Environment]:
    try:
        doc = orjson.loads(body)  # nesting beyond orjson's 1024 levels is refused, not recursed
    except orjson.JSONDecodeError as exc:
        raise UsageError(f"{name}: not valid JSON: {str(exc).splitlines()[0][:200]}") from exc
    if not isinstance(doc, dict) or doc.get("schema") != INVENTORY_SCHEMA:
        raise UsageError(f"{name}: not a {INVENTORY_SCHEMA} document")
    raw_envs = doc.get("environments")
    if not isinstance(raw_envs, list):
        raise UsageError(f"{name}: environments is not a list")
    if len(raw_envs) > MAX_ENVIRONMENTS:
        raise UsageError(f"{name}: more than {MAX_ENVIRONMENTS} environments")
    envs: list[Environment] = []
    total = 0
    for i, raw in enumerate(raw_envs):
        where = f"{name}: environments[{i}]"
        if not isinstance(raw, dict):
            raise UsageError(f"{where} is not an object")
        packages = raw.get("packages")
        if not isinstance(packages, list):
            raise UsageError(f"{where}.packages is not a list")
        total += len(packages)
        if total > MAX_PACKAGES:
            raise UsageError(f"{name}: more than {MAX_PACKAGES} packages")
        kind = _short(raw.get("kind"), 32) or "inventory"
        source = _short(raw.get("source"), MAX_SOURCE) or name
        envs.append(Environment(
            _short(raw.get("id"), MAX_SOURCE) or source, kind, source,
            tuple(_package(f"{where}.packages[{j}]", p) for j, p in enumerate(packages)
                  # a declared range no lockfile resolved is not a holding (``Fleet.record``)
                  if not (isinstance(p, dict) and p.get("exact") is False))))
    return envs


def _short(value: object, limit: int) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return None
    value = value.strip()
    if len(value) > limit or not _printable(value):
        raise UsageError(f"a field is longer than {limit} characters or not printable: "
                         f"{value[:40]!r}")
    return value


def _package(where: str, raw: Any) -> InstalledPackage:
    if not isinstance(raw, dict):
        raise UsageError(f"{where} is not an object")
    pkg_name, version = raw.get("name"), raw.get("version")
    if not isinstance(pkg_name, str) or not valid_name(pkg_name):
        raise UsageError(f"{where}.name is not a package name")
    if (not isinstance(version, str) or len(version) > MAX_VERSION
            or parse(version) is None):
        raise UsageError(f"{where}.version is not an exact version")
    paths_raw = raw.get("paths", [])
    if not isinstance(paths_raw, list) or len(paths_raw) > MAX_PATHS:
        raise UsageError(f"{where}.paths is not a list of at most {MAX_PATHS} paths")
    paths: list[tuple[str, ...]] = []
    for path in paths_raw:
        if (not isinstance(path, list) or len(path) > MAX_PATH_STEPS
                or not all(isinstance(s, str) and 0 < len(s) <= 214 and _printable(s)
                           for s in path)):
            raise UsageError(f"{where}.paths: a path is not a list of at most "
                             f"{MAX_PATH_STEPS} names")
        paths.append(tuple(path))
    return InstalledPackage(pkg_name, version, dev=raw.get("dev") is True,
                            optional=raw.get("optional") is True, paths=tuple(paths),
                            paths_cut=raw.get("paths_cut") is True)
