"""A small on-disk cache: tarballs by content hash, packuments by URL with their ETag."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from chainwatch.private import private_dir


def _atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file (mode 0600, folders 0700) and rename it into place:
    a reader sees the old content or the new, never a part."""
    private_dir(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def ambiguous_integrity(integrity: str) -> str | None:
    """Why an SRI string does not pin one set of bytes, or None.

    npm accepts a tarball when *any* hash of the strongest algorithm matches, so
    ``sha512-A sha512-B`` lets a registry serve A to a scanner and B to a client: such a
    string is refused wherever chainwatch judges or serves a release."""
    order = {"sha1": 1, "sha256": 2, "sha384": 3, "sha512": 4}
    digests: dict[str, set[str]] = {}
    for token in integrity.split():
        algo, _, b64 = token.partition("-")
        if algo in order:
            digests.setdefault(algo, set()).add(b64.split("?", 1)[0])
    if not digests:
        return None
    strongest = max(digests, key=lambda a: order[a])
    if len(digests[strongest]) > 1:
        return (f"{len(digests[strongest])} different {strongest} hashes: npm accepts bytes that "
                "match any of them, so they do not pin one tarball")
    return None


def sri_to_hex(integrity: str) -> tuple[str, str] | None:
    """``sha512-<base64>`` → (``sha512``, hex digest); the strongest hash when several."""
    best: tuple[str, str] | None = None
    order = {"sha1": 1, "sha256": 2, "sha384": 3, "sha512": 4}
    for token in integrity.split():
        algo, _, b64 = token.partition("-")
        if algo not in order:
            continue
        try:
            digest = base64.b64decode(b64.split("?", 1)[0], validate=False).hex()
        except ValueError:
            continue
        if best is None or order[algo] > order[best[0]]:
            best = (algo, digest)
    return best


class Cache:
    """Content-addressed blobs plus URL-keyed documents; safe for concurrent writers."""

    def __init__(self, root: Path) -> None:
        self.root = root
        #: records written by this object (the client prunes the cache only when it wrote)
        self.written = 0

    # -- blobs (tarballs), addressed by their own hash -------------------------------------
    def _blob_path(self, algo: str, hexdigest: str) -> Path:
        return self.root / "content" / algo / hexdigest[:2] / hexdigest[2:]

    def get_blob(self, algo: str, hexdigest: str) -> bytes | None:
        path = self._blob_path(algo, hexdigest)
        try:
            data = path.read_bytes()
            if algo != "sha512":  # other digests are small pointers to the sha512 entry
                data = self._blob_path("sha512", data.decode("ascii")).read_bytes()
        except (OSError, UnicodeDecodeError):
            return None
        if hashlib.new(algo, data).hexdigest() != hexdigest:
            path.unlink(missing_ok=True)  # a damaged entry is dropped, never served
            return None
        return data

    def put_blob(self, data: bytes) -> str:
        digest = hashlib.sha512(data).hexdigest()
        _atomic_write(self._blob_path("sha512", digest), data)
        sha1 = hashlib.sha1(data).hexdigest()
        _atomic_write(self._blob_path("sha1", sha1), digest.encode("ascii"))
        self.written += 1
        return digest

    # -- documents (packuments), addressed by URL -------------------------------------------
    def _doc_path(self, url: str) -> Path:
        key = hashlib.sha256(url.encode()).hexdigest()
        return self.root / "packuments" / key[:2] / f"{key[2:]}.json"

    def doc_entry(self, url: str) -> DocEntry | None:
        """The cached bytes for ``url`` and the validators stored for exactly those bytes
        (none when the validators belong to another body or another URL: a crash or a racing
        writer between the two renames leaves a body without its ETag, never an old body with
        a new ETag; a body whose record is missing, unreadable or for another URL is never
        fresh)."""
        path = self._doc_path(url)
        try:
            raw = path.read_bytes()
        except OSError:
            return None
        try:
            meta = json.loads(path.with_suffix(".meta").read_bytes())
        except (OSError, ValueError):
            meta = None
        digest = hashlib.sha256(raw).hexdigest()
        if (not isinstance(meta, dict) or meta.get("sha256") != digest
                or meta.get("url", url) != url):
            meta = {}
        fetched = meta.get("fetched")
        return DocEntry(raw, digest, _text(meta.get("etag")), _text(meta.get("last_modified")),
                        float(fetched) if isinstance(fetched, int | float)
                        and not isinstance(fetched, bool) else None, _text(meta.get("slim")))

    def get_doc(self, url: str) -> tuple[dict[str, Any], str | None] | None:
        """The cached JSON document for ``url`` and its ETag (None when absent or corrupt)."""
        found = self.doc_entry(url)
        if found is None:
            return None
        body = found.parse()
        return None if body is None else (body, found.etag)

    def last_modified(self, url: str) -> str | None:
        """The ``Last-Modified`` the registry sent with the cached document, if any."""
        found = self.doc_entry(url)
        return found.last_modified if found else None

    def put_doc(self, url: str, raw: bytes, etag: str | None,
                last_modified: str | None = None, fetched: float | None = None,
                slim: bytes | None = None) -> None:
        """Store the registry's bytes as they came (no re-serialisation) and their ``slim``
        copy, then the validators (ETag, Last-Modified) and when they were fetched, with the
        digests of those bytes. The bodies go first: the record is written only once they are
        in place, and is ignored beside any other body."""
        path = self._doc_path(url)
        _atomic_write(path, raw)
        if slim is not None:
            _atomic_write(path.with_suffix(".slim"), slim)
        self._write_meta(url, hashlib.sha256(raw).hexdigest(), etag, last_modified, fetched,
                         hashlib.sha256(slim).hexdigest() if slim is not None else None)
        for legacy in (".etag", ".lastmod"):  # validators of chainwatch before 2026-12
            path.with_suffix(legacy).unlink(missing_ok=True)

    def revalidated(self, url: str, entry: DocEntry, etag: str | None,
                    last_modified: str | None, fetched: float) -> None:
        """The registry confirmed the cached bytes (a 304, or a 200 with the same bytes): only
        the record is rewritten, with the new validators and time."""
        self._write_meta(url, entry.sha256, etag or entry.etag,
                         last_modified or entry.last_modified, fetched, entry.slim)

    def _write_meta(self, url: str, sha256: str, etag: str | None, last_modified: str | None,
                    fetched: float | None, slim: str | None = None) -> None:
        meta = {"sha256": sha256, "url": url, "etag": etag or None,
                "last_modified": last_modified or None, "fetched": fetched, "slim": slim}
        _atomic_write(self._doc_path(url).with_suffix(".meta"), json.dumps(meta).encode())
        self.written += 1

    # -- a packument's slim copy (what release analysis reads), to skip parsing the full one --
    def fresh_slim(self, url: str, ttl: float) -> dict[str, Any] | None:
        """The slim copy of ``url``'s packument when the registry sent or confirmed the full
        one less than ``ttl`` seconds ago and the slim copy is the one derived from it (its
        digest is in the record), else None. The full body is not read: a fresh run parses a
        third of the bytes."""
        path = self._doc_path(url)
        try:
            meta = json.loads(path.with_suffix(".meta").read_bytes())
        except (OSError, ValueError):
            return None
        if not isinstance(meta, dict) or meta.get("url") != url:
            return None
        fetched, slim_sha = meta.get("fetched"), meta.get("slim")
        if (not isinstance(fetched, int | float) or isinstance(fetched, bool)
                or not isinstance(slim_sha, str)):
            return None
        if not 0 <= time.time() - fetched < ttl:
            return None
        try:
            raw = path.with_suffix(".slim").read_bytes()
        except OSError:
            return None
        if hashlib.sha256(raw).hexdigest() != slim_sha:
            return None
        return parse_json_object(raw)

    def put_slim(self, url: str, body_sha256: str, raw: bytes) -> None:
        """Store the slim copy derived from the body whose digest is ``body_sha256``; it is
        recorded only while the record still describes that body."""
        path = self._doc_path(url)
        try:
            meta = json.loads(path.with_suffix(".meta").read_bytes())
        except (OSError, ValueError):
            return
        if not isinstance(meta, dict) or meta.get("sha256") != body_sha256:
            return
        digest = hashlib.sha256(raw).hexdigest()
        if meta.get("slim") == digest and path.with_suffix(".slim").exists():
            return
        _atomic_write(path.with_suffix(".slim"), raw)
        meta["slim"] = digest
        _atomic_write(path.with_suffix(".meta"), json.dumps(meta).encode())
        self.written += 1

    # -- size ---------------------------------------------------------------------------------
    def prune(self, max_bytes: int) -> int:
        """Keep the cache within ``max_bytes``: the least recently written files go first (a
        packument with its record, a tarball with nothing: its sha1 pointer then leads
        nowhere, which is a miss). Returns the bytes removed."""
        files: list[tuple[float, int, Path]] = []
        total = 0
        for top in ("packuments", "content"):
            for folder, _dirs, names in os.walk(self.root / top):
                for name in names:
                    path = Path(folder) / name
                    try:
                        st = path.stat()
                    except OSError:
                        continue
                    files.append((st.st_mtime, st.st_size, path))
                    total += st.st_size
        removed = 0
        if total <= max_bytes:
            return 0
        for _mtime, size, path in sorted(files, key=lambda f: f[0]):
            if total - removed <= max_bytes:
                break
            try:
                path.unlink()
            except OSError:
                continue
            removed += size
        return removed


@dataclass(frozen=True)
class DocEntry:
    """One cached document: its bytes and what the registry said about them."""

    raw: bytes
    sha256: str
    etag: str | None
    last_modified: str | None
    #: when the registry last sent or confirmed these bytes (time.time()), None when unknown
    fetched: float | None
    #: the digest of the slim copy derived from these bytes, if one was stored
    slim: str | None = None

    def age(self, now: float | None = None) -> float | None:
        """Seconds since the registry confirmed these bytes; None when unknown or in the
        future (a clock set back, or a record written by hand: never fresh)."""
        if self.fetched is None:
            return None
        age = (time.time() if now is None else now) - self.fetched
        return age if age >= 0 else None

    def parse(self) -> dict[str, Any] | None:
        """The JSON object, or None when the bytes are not one (a corrupt file is a miss)."""
        return parse_json_object(self.raw)


def parse_json_object(raw: bytes) -> dict[str, Any] | None:
    """``raw`` as a JSON object: orjson (several times faster on multi-megabyte packuments),
    falling back to the standard library for what orjson refuses and JSON allows (integers
    beyond 64 bits); None when it is not a JSON object."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):
            return None
    return body if isinstance(body, dict) else None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
