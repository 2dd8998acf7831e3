"""A small on-disk cache: tarballs by content hash, packuments by URL with their ETag."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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

    def get_doc(self, url: str) -> tuple[dict[str, Any], str | None] | None:
        """The cached JSON document for ``url`` and its ETag."""
        path = self._doc_path(url)
        try:
            body = json.loads(path.read_bytes())
        except (OSError, ValueError):
            return None
        if not isinstance(body, dict):
            return None
        try:
            etag: str | None = path.with_suffix(".etag").read_text().strip() or None
        except OSError:
            etag = None
        return body, etag

    def last_modified(self, url: str) -> str | None:
        """The ``Last-Modified`` the registry sent with the cached document, if any."""
        try:
            return self._doc_path(url).with_suffix(".lastmod").read_text().strip() or None
        except OSError:
            return None

    def put_doc(self, url: str, raw: bytes, etag: str | None,
                last_modified: str | None = None) -> None:
        """Store the registry's bytes as they came (no re-serialisation) and the validators
        (ETag, Last-Modified) beside."""
        path = self._doc_path(url)
        _atomic_write(path.with_suffix(".etag"), (etag or "").encode())
        _atomic_write(path.with_suffix(".lastmod"), (last_modified or "").encode())
        _atomic_write(path, raw)
