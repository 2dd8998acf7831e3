"""A small on-disk cache: tarballs by content hash, packuments by URL with their ETag."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

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
        return digest

    # -- documents (packuments), addressed by URL -------------------------------------------
    def _doc_path(self, url: str) -> Path:
        key = hashlib.sha256(url.encode()).hexdigest()
        return self.root / "packuments" / key[:2] / f"{key[2:]}.json"

    def _read_doc(self, url: str) -> tuple[bytes, dict[str, Any]] | None:
        """The cached bytes for ``url`` and the validators stored for exactly those bytes
        (empty when the validators belong to another body: a crash or a racing writer between
        the two renames leaves a body without its ETag, never an old body with a new ETag)."""
        path = self._doc_path(url)
        try:
            raw = path.read_bytes()
        except OSError:
            return None
        try:
            meta = json.loads(path.with_suffix(".meta").read_bytes())
        except (OSError, ValueError):
            meta = None
        if not isinstance(meta, dict) or meta.get("sha256") != hashlib.sha256(raw).hexdigest():
            meta = {}
        return raw, meta

    def get_doc(self, url: str) -> tuple[dict[str, Any], str | None] | None:
        """The cached JSON document for ``url`` and its ETag."""
        found = self._read_doc(url)
        if found is None:
            return None
        try:
            body = json.loads(found[0])
        except ValueError:
            return None
        if not isinstance(body, dict):
            return None
        etag = found[1].get("etag")
        return body, etag if isinstance(etag, str) and etag else None

    def last_modified(self, url: str) -> str | None:
        """The ``Last-Modified`` the registry sent with the cached document, if any."""
        found = self._read_doc(url)
        value = found[1].get("last_modified") if found else None
        return value if isinstance(value, str) and value else None

    def put_doc(self, url: str, raw: bytes, etag: str | None,
                last_modified: str | None = None) -> None:
        """Store the registry's bytes as they came (no re-serialisation), then the validators
        (ETag, Last-Modified) with the digest of those bytes. The body goes first: its
        validators are written only once it is in place, and are ignored beside any other
        body."""
        path = self._doc_path(url)
        _atomic_write(path, raw)
        meta = {"sha256": hashlib.sha256(raw).hexdigest(), "etag": etag or None,
                "last_modified": last_modified or None}
        _atomic_write(path.with_suffix(".meta"), json.dumps(meta).encode())
        for legacy in (".etag", ".lastmod"):  # validators of chainwatch before 2026-12
            path.with_suffix(legacy).unlink(missing_ok=True)
