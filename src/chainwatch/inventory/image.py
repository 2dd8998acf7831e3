"""Container images saved with ``docker save`` or as an OCI layout tarball.

Layers are applied in order with whiteouts (``.wh.name`` deletes, ``.wh..wh..opq`` empties a
folder) to a virtual filesystem that keeps only package manifests and lockfiles (data, never
code); those files are then laid out in a private temporary folder and inventoried by the same
walker as any project, their sources named ``image.tar!/path``.

Layers are streamed: each blob is read from the image file as a tar stream (gzip, bzip2 and xz
decompressed on the fly), one entry at a time, so memory holds the kept manifests and never a
whole layer. Entries, bytes and kept files are bounded; anything about the image that cannot be
read (a missing blob, an index that is not an object, a zstd layer) is an InventoryError, which
the walker reports for the image while the other paths are still read.
"""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import posixpath
import tarfile
import tempfile
import zlib
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from chainwatch.inventory.base import InventoryError
from chainwatch.model import Environment

if TYPE_CHECKING:
    from chainwatch.inventory.walk import FileError

KEEP = {"package.json", "package-lock.json", "npm-shrinkwrap.json", ".package-lock.json",
        "yarn.lock", "pnpm-lock.yaml", "bun.lock"}
IMAGE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".oci")
#: Entries of the image tarball itself (blobs, manifests).
MAX_MEMBERS = 100_000
#: Entries over all layers, and their declared bytes (what streaming reads through).
MAX_ENTRIES = 5_000_000
MAX_LAYER_BYTES = 64 * 1024 * 1024 * 1024
#: One kept file, and all kept files together (held in memory until laid out).
MAX_FILE = 64 * 1024 * 1024
MAX_KEPT_BYTES = 512 * 1024 * 1024
#: manifest.json, index.json and manifest blobs are read whole: at most this.
MAX_JSON = 8 * 1024 * 1024
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def is_image(path: Path) -> bool:
    """Whether a file given as a path is an image: a tarball holding ``manifest.json``,
    ``index.json`` or ``oci-layout`` anywhere (``docker save`` writes them last, after every
    layer). InventoryError when it has an image's name but cannot be read as a tarball."""
    if not path.is_file() or not path.name.endswith(IMAGE_SUFFIXES):
        return False
    try:
        with tarfile.open(path) as tar:
            for n, member in enumerate(tar):
                if member.name.removeprefix("./") in ("manifest.json", "oci-layout", "index.json"):
                    return True
                if n >= MAX_MEMBERS:
                    break
    except (tarfile.TarError, OSError, EOFError, zlib.error, lzma.LZMAError) as exc:
        raise InventoryError(f"not a readable tarball: {exc}") from exc
    return False


def _member(tar: tarfile.TarFile, name: str) -> tarfile.TarInfo:
    for candidate in (name, f"./{name}"):
        try:
            return tar.getmember(candidate)
        except KeyError:
            continue
    raise InventoryError(f"the image has no {name}")


def _blob(tar: tarfile.TarFile, name: str) -> bytes:
    """A small blob (manifest, index, config) read whole, at most MAX_JSON bytes."""
    limit = MAX_JSON
    member = _member(tar, name)
    if member.size > limit:
        raise InventoryError(f"{name} is larger than {limit} bytes")
    handle = tar.extractfile(member)
    if handle is None:
        raise InventoryError(f"{name} in the image is not a file")
    return handle.read(member.size)  # read(limit) would allocate the whole limit


def _json(tar: tarfile.TarFile, name: str) -> Any:
    try:
        return json.loads(_blob(tar, name))
    except ValueError as exc:
        raise InventoryError(f"{name} is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise InventoryError(f"{name} is nested too deeply") from exc


def _digest_path(descriptor: object, what: str) -> str:
    digest = descriptor.get("digest") if isinstance(descriptor, dict) else None
    if not isinstance(digest, str) or ":" not in digest or ".." in digest or "/" in digest:
        raise InventoryError(f"{what} has no usable digest")
    return "blobs/" + digest.replace(":", "/", 1)


def _first(doc: object, key: str, what: str) -> object:
    entries = doc.get(key) if isinstance(doc, dict) else None
    if not isinstance(entries, list) or not entries:
        raise InventoryError(f"{what} is not an object with a non-empty '{key}' list")
    return entries[0]


def _layers(tar: tarfile.TarFile) -> tuple[list[str], str]:
    """Layer blob names in order, and a description of the image."""
    names = set()
    for n, member in enumerate(tar):
        if n >= MAX_MEMBERS:
            raise InventoryError("the image has too many entries")
        names.add(member.name.removeprefix("./"))
    if "manifest.json" in names:  # docker save
        first = _first({"images": _json(tar, "manifest.json")}, "images", "docker manifest.json")
        if not isinstance(first, dict):
            raise InventoryError("docker manifest.json does not describe an image")
        layers, tags = first.get("Layers"), first.get("RepoTags")
        if not isinstance(layers, list) or not all(isinstance(x, str) for x in layers):
            raise InventoryError("docker manifest.json has no list of layers")
        tags = [t for t in tags if isinstance(t, str)] if isinstance(tags, list) else []
        return layers, ",".join(tags)
    descriptor = _first(_json(tar, "index.json"), "manifests", "OCI index.json")  # OCI layout
    for _ in range(4):  # an image index may point at another index
        digest_path = _digest_path(descriptor, "an OCI descriptor")
        doc = _json(tar, digest_path)
        if isinstance(doc, dict) and "layers" in doc:
            if not isinstance(doc["layers"], list):
                raise InventoryError("the OCI image manifest's layers are not a list")
            layers = [_digest_path(layer, "an OCI layer") for layer in doc["layers"]]
            annotations = descriptor.get("annotations") if isinstance(descriptor, dict) else None
            ref = annotations.get("org.opencontainers.image.ref.name") if isinstance(
                annotations, dict) else None
            return layers, ref if isinstance(ref, str) else digest_path.removeprefix("blobs/")
        descriptor = _first(doc, "manifests", f"OCI blob {digest_path}")
    raise InventoryError("the OCI index does not lead to an image manifest")


class _Tree:
    """The final filesystem, reduced to the files kept: folders are dicts, files bytes."""

    def __init__(self) -> None:
        self.root: dict[str, Any] = {}
        self.kept_bytes = 0

    def _folder(self, parts: list[str], create: bool) -> dict[str, Any] | None:
        here = self.root
        for part in parts:
            child = here.get(part)
            if not isinstance(child, dict):
                if not create:
                    return None
                child = here[part] = {}  # a folder in a later layer replaces a file
            here = child
        return here

    def remove(self, path: str) -> None:
        *parent, base = path.split("/")
        folder = self._folder(parent, create=False)
        if folder is not None:
            folder.pop(base, None)

    def empty(self, path: str) -> None:
        folder = self._folder(path.split("/") if path else [], create=False)
        if folder is not None:
            folder.clear()

    def folder(self, path: str) -> None:
        self._folder(path.split("/"), create=True)

    def put(self, path: str, data: bytes) -> None:
        self.kept_bytes += len(data)
        if self.kept_bytes > MAX_KEPT_BYTES:
            raise InventoryError("the image holds more manifests than chainwatch reads")
        *parent, base = path.split("/")
        folder = self._folder(parent, create=True)
        assert folder is not None
        folder[base] = data

    def files(self) -> dict[str, bytes]:
        out: dict[str, bytes] = {}
        stack: list[tuple[str, dict[str, Any]]] = [("", self.root)]
        while stack:
            prefix, folder = stack.pop()
            for name, child in folder.items():
                if isinstance(child, dict):
                    stack.append((f"{prefix}{name}/", child))
                else:
                    out[f"{prefix}{name}"] = child
        return out


@contextmanager
def _open_layer(tar: tarfile.TarFile, name: str) -> Iterator[tarfile.TarFile]:
    """A layer blob as a tar stream over the image file (never read whole). Decompression
    goes through gzip/bz2/lzma file objects, which inflate a bounded amount per read (the
    stream mode's own decompressor inflates a whole chunk at once, ~10 MB for zeros)."""
    member = _member(tar, name)
    handle = tar.extractfile(member)
    if handle is None:
        raise InventoryError(f"layer {name} in the image is not a file")
    magic = handle.read(6)
    handle.seek(0)
    if magic.startswith(ZSTD_MAGIC):
        raise InventoryError(f"layer {name} is zstd-compressed, which chainwatch cannot read")
    with ExitStack() as stack:
        stream: IO[bytes] | gzip.GzipFile | bz2.BZ2File | lzma.LZMAFile = handle
        if magic.startswith(b"\x1f\x8b"):
            stream = stack.enter_context(gzip.GzipFile(fileobj=handle, mode="rb"))
        elif magic.startswith(b"BZh"):
            stream = stack.enter_context(bz2.BZ2File(handle))
        elif magic.startswith(b"\xfd7zXZ\x00"):
            stream = stack.enter_context(lzma.LZMAFile(handle))
        yield stack.enter_context(tarfile.open(fileobj=stream, mode="r|"))


def _apply(tree: _Tree, layer: tarfile.TarFile, budget: list[int]) -> None:
    for member in layer:
        budget[0] -= 1
        budget[1] -= member.size
        if budget[0] < 0:
            raise InventoryError(f"the image's layers hold more than {MAX_ENTRIES:,} entries")
        if budget[1] < 0:
            raise InventoryError(f"the image's layers hold more than {MAX_LAYER_BYTES:,} bytes")
        path = posixpath.normpath("/" + member.name).lstrip("/")  # never above the root
        if not path:
            continue
        folder, base = posixpath.split(path)
        if base == ".wh..wh..opq":
            tree.empty(folder)
            continue
        if base.startswith(".wh."):
            tree.remove(posixpath.join(folder, base[4:]))
            continue
        if member.isdir():
            tree.folder(path)  # replaces a file of that name, keeps a folder's contents
            continue
        if not member.isreg() or base not in KEEP or member.size > MAX_FILE:
            tree.remove(path)  # replaced by something we do not keep
            continue
        handle = layer.extractfile(member)
        if handle is not None:
            tree.put(path, handle.read(member.size))  # at most MAX_FILE, checked above


def image_files(path: Path) -> tuple[dict[str, bytes], str]:
    """The final filesystem's manifests and lockfiles, by path, and the image's name."""
    try:
        with tarfile.open(path) as tar:
            layers, name = _layers(tar)
            tree = _Tree()
            budget = [MAX_ENTRIES, MAX_LAYER_BYTES]
            for layer_name in layers:
                with _open_layer(tar, layer_name) as layer:
                    _apply(tree, layer, budget)
    except (tarfile.TarError, OSError, EOFError, zlib.error, lzma.LZMAError, ValueError) as exc:
        if isinstance(exc, InventoryError):
            raise
        raise InventoryError(f"not a readable image: {exc}") from exc
    return tree.files(), name


def inventory_image(path: Path) -> Iterator[Environment | FileError]:
    """Environments inside the image (walked like a project), sourced as ``image!/path``;
    the id names the image by its tag when it has one."""
    from chainwatch.inventory.walk import FileError as FileErrorType
    from chainwatch.inventory.walk import walk

    files, name = image_files(path)
    with tempfile.TemporaryDirectory(prefix="chainwatch-image-") as tmp:
        root = Path(tmp)
        for rel, data in files.items():
            target = root / rel
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
            except OSError as exc:  # a name this filesystem cannot hold
                yield FileErrorType(f"{path}!/{rel}", f"cannot lay out: {exc.strerror}")
        for found in walk([root]):
            inner = Path(found.source).relative_to(root).as_posix()
            source = f"{path}!/{inner}"
            if isinstance(found, Environment):
                yield replace(found, id=f"{name or path}!/{inner}", source=source,
                              kind=f"image:{found.kind}")
            else:
                yield replace(found, source=source)
