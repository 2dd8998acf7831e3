"""Container images saved with ``docker save`` or as an OCI layout tarball.

Layers are applied in order with whiteouts (``.wh.name`` deletes, ``.wh..wh..opq`` empties a
folder) to a virtual filesystem that keeps only package manifests and lockfiles (data, never
code); those files are then laid out in a private temporary folder and inventoried by the same
walker as any project, their sources named ``image.tar!/path``.
"""

from __future__ import annotations

import io
import json
import posixpath
import tarfile
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chainwatch.inventory.base import InventoryError
from chainwatch.model import Environment

if TYPE_CHECKING:
    from chainwatch.inventory.walk import FileError

KEEP = {"package.json", "package-lock.json", "npm-shrinkwrap.json", ".package-lock.json",
        "yarn.lock", "pnpm-lock.yaml", "bun.lock"}
MAX_MEMBERS = 2_000_000
MAX_FILE = 64 * 1024 * 1024
MAX_KEPT_BYTES = 1024 * 1024 * 1024


def is_image(path: Path) -> bool:
    if not path.is_file() or not path.name.endswith((".tar", ".tar.gz", ".tgz", ".oci")):
        return False
    try:
        with tarfile.open(path) as tar:
            names = set()
            for n, member in enumerate(tar):
                names.add(member.name.lstrip("./"))
                if n > 50:
                    break
    except (tarfile.TarError, OSError, EOFError, zlib.error):
        return False
    return "manifest.json" in names or "oci-layout" in names or "index.json" in names


def _blob(tar: tarfile.TarFile, name: str) -> bytes:
    for candidate in (name, f"./{name}"):
        try:
            handle = tar.extractfile(candidate)
        except KeyError:
            continue
        if handle is not None:
            return handle.read()
    raise InventoryError(f"the image has no {name}")


def _layers(tar: tarfile.TarFile) -> tuple[list[str], str]:
    """Layer blob names in order, and a description of the image."""
    names = {m.name.lstrip("./") for m in tar.getmembers()}
    if "manifest.json" in names:  # docker save
        manifest = json.loads(_blob(tar, "manifest.json"))
        if not isinstance(manifest, list) or not manifest:
            raise InventoryError("docker manifest.json lists no image")
        first = manifest[0]
        return [str(x) for x in first.get("Layers") or []], ",".join(first.get("RepoTags") or [])
    index = json.loads(_blob(tar, "index.json"))  # OCI layout
    descriptor: dict[str, Any] = (index.get("manifests") or [{}])[0]
    for _ in range(4):  # an image index may point at another index
        digest = str(descriptor.get("digest", ""))
        doc = json.loads(_blob(tar, "blobs/" + digest.replace(":", "/")))
        if "layers" in doc:
            layers = ["blobs/" + str(layer["digest"]).replace(":", "/") for layer in doc["layers"]]
            return layers, str((descriptor.get("annotations") or {}).get(
                "org.opencontainers.image.ref.name", digest))
        descriptor = (doc.get("manifests") or [{}])[0]
    raise InventoryError("the OCI index does not lead to an image manifest")


def _apply(files: dict[str, bytes], layer: bytes, budget: list[int]) -> None:
    with tarfile.open(fileobj=io.BytesIO(layer), mode="r:*") as tar:
        for n, member in enumerate(tar):
            if n > MAX_MEMBERS:
                raise InventoryError("a layer has too many entries")
            path = posixpath.normpath(member.name.lstrip("./"))
            if path.startswith("..") or path.startswith("/"):
                continue
            folder, base = posixpath.split(path)
            if base == ".wh..wh..opq":
                prefix = f"{folder}/"
                for key in [k for k in files if k.startswith(prefix)]:
                    del files[key]
                continue
            if base.startswith(".wh."):
                gone = posixpath.join(folder, base[4:])
                for key in [k for k in files if k == gone or k.startswith(f"{gone}/")]:
                    del files[key]
                continue
            if member.isdir() and path in files:
                del files[path]
            if not member.isreg() or base not in KEEP or member.size > MAX_FILE:
                if not member.isdir():
                    files.pop(path, None)  # replaced by something we do not keep
                continue
            handle = tar.extractfile(member)
            if handle is None:
                continue
            data = handle.read(MAX_FILE)
            budget[0] -= len(data)
            if budget[0] < 0:
                raise InventoryError("the image holds more manifests than chainwatch reads")
            files[path] = data


def image_files(path: Path) -> tuple[dict[str, bytes], str]:
    """The final filesystem's manifests and lockfiles, by path, and the image's name."""
    try:
        with tarfile.open(path) as tar:
            layers, name = _layers(tar)
            files: dict[str, bytes] = {}
            budget = [MAX_KEPT_BYTES]
            for layer in layers:
                _apply(files, _blob(tar, layer), budget)
    except (tarfile.TarError, OSError, EOFError, zlib.error, ValueError, KeyError) as exc:
        raise InventoryError(f"not a readable image: {exc}") from exc
    return files, name


def inventory_image(path: Path) -> Iterator[Environment | FileError]:
    """Environments inside the image (walked like a project), sourced as ``image!/path``;
    the id names the image by its tag when it has one."""
    from chainwatch.inventory.walk import walk

    files, name = image_files(path)
    with tempfile.TemporaryDirectory(prefix="chainwatch-image-") as tmp:
        root = Path(tmp)
        for rel, data in files.items():
            target = root / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        for found in walk([root]):
            inner = Path(found.source).relative_to(root).as_posix()
            source = f"{path}!/{inner}"
            if isinstance(found, Environment):
                yield replace(found, id=f"{name or path}!/{inner}", source=source,
                              kind=f"image:{found.kind}")
            else:
                yield replace(found, source=source)
