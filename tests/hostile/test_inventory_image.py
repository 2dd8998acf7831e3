"""Container images from strangers: layers streamed, bounded, and every flaw a per-file error.

Before: each layer blob was read whole into memory (a docker-save image with a 512 MB layer:
532 MB max RSS, ``python bench/inventory_bombs.py``); an OCI index that is a list and a layer
whose file clashes with a later folder raised tracebacks that ended the run. Now: 20 MB max
RSS for the same image; the flaws are errors of that image alone.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import tarfile
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chainwatch.inventory import InventoryError
from chainwatch.inventory import image as image_module
from chainwatch.inventory.image import image_files
from chainwatch.inventory.walk import FileError, walk
from chainwatch.model import Environment

LOCK_BAD = json.dumps({"name": "svc", "lockfileVersion": 3, "packages": {
    "": {"name": "svc", "dependencies": {"debug": "^4"}},
    "node_modules/debug": {"version": "4.4.2"}}}).encode()
LOCK_OK = json.dumps({"name": "ok", "lockfileVersion": 3, "packages": {
    "": {"name": "ok", "dependencies": {"ms": "^2"}},
    "node_modules/ms": {"version": "2.1.3"}}}).encode()


class _Zeros(io.RawIOBase):
    def __init__(self, n: int) -> None:
        self.n = n

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        k = min(len(b), self.n)
        b[:k] = bytes(k)
        self.n -= k
        return k


Entry = bytes | int | None  # file content, a size of zeros, or a folder


def layer(members: dict[str, Entry], gz: bool = False) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif isinstance(data, int):
                info.size = data
                tar.addfile(info, _Zeros(data))
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    raw = buf.getvalue()
    return gzip.compress(raw, mtime=0) if gz else raw


def write_tar(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def docker_image(path: Path, layers: list[bytes], manifest: Any = None) -> Path:
    names = [f"l{i}/layer.tar" for i in range(len(layers))]
    doc = manifest if manifest is not None else [
        {"Config": "c.json", "RepoTags": ["svc:1"], "Layers": names}]
    return write_tar(path, {"manifest.json": json.dumps(doc).encode(), "c.json": b"{}",
                            **dict(zip(names, layers, strict=True))})


def oci_image(path: Path, index: Any, blobs: dict[str, bytes]) -> Path:
    return write_tar(path, {"oci-layout": b'{"imageLayoutVersion": "1.0.0"}',
                            "index.json": json.dumps(index).encode(),
                            **{f"blobs/{d.replace(':', '/')}": b for d, b in blobs.items()}})


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_layers_are_streamed_not_read_whole(tmp_path: Path) -> None:
    big = 48 * 1024 * 1024
    image = docker_image(tmp_path / "big.tar", [layer({"app/package-lock.json": LOCK_BAD,
                                                       "app/big.bin": big})])
    tracemalloc.start()
    files, name = image_files(image)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert list(files) == ["app/package-lock.json"] and name == "svc:1"
    assert peak < 8 * 1024 * 1024  # reading the layer whole allocated > 48 MB


def test_gzip_layers_stream_too(tmp_path: Path) -> None:
    blob = layer({"app/big.bin": 32 * 1024 * 1024, "app/package-lock.json": LOCK_BAD}, gz=True)
    manifest = json.dumps({"schemaVersion": 2, "layers": [{"digest": digest(blob)}]}).encode()
    image = oci_image(tmp_path / "svc.oci", {"manifests": [{"digest": digest(manifest)}]},
                      {digest(manifest): manifest, digest(blob): blob})
    tracemalloc.start()
    files, _ = image_files(image)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert list(files) == ["app/package-lock.json"] and peak < 8 * 1024 * 1024


def _walk_with_neighbour(tmp_path: Path, image: Path) -> tuple[list[FileError], set[str]]:
    neighbour = tmp_path / "repo"
    neighbour.mkdir(exist_ok=True)
    (neighbour / "package-lock.json").write_bytes(LOCK_BAD)
    results = list(walk([image, neighbour]))
    errors = [r for r in results if isinstance(r, FileError)]
    found = {f"{p.name}@{p.version}" for r in results if isinstance(r, Environment)
             for p in r.packages}
    return errors, found


@pytest.mark.parametrize("index", [
    [{"digest": "sha256:00"}],                       # an index that is a list
    {"manifests": {"digest": "sha256:00"}},          # manifests not a list
    {"manifests": []},
    {"manifests": [5]},
    {"manifests": [{"digest": 7}]},
    {"manifests": [{"digest": "sha256:../../etc/passwd"}]},
    {"manifests": [{"digest": "sha256:" + "0" * 64}]},  # a missing blob
])
def test_broken_oci_indexes_are_errors_of_that_image(tmp_path: Path, index: Any) -> None:
    image = oci_image(tmp_path / "svc.oci", index, {})
    errors, found = _walk_with_neighbour(tmp_path, image)
    assert [e.source for e in errors] == [str(image)]
    assert found == {"debug@4.4.2"}  # the next path is still read


@pytest.mark.parametrize("manifest", [
    {"Layers": []}, [], [5], [{"Layers": "l0/layer.tar"}], [{"Layers": [1]}],
    [{"Layers": ["missing/layer.tar"]}],
])
def test_broken_docker_manifests_are_errors_of_that_image(tmp_path: Path, manifest: Any) -> None:
    image = docker_image(tmp_path / "svc.tar", [layer({"a/package-lock.json": LOCK_OK})],
                         manifest=manifest)
    errors, found = _walk_with_neighbour(tmp_path, image)
    assert [e.source for e in errors] == [str(image)]
    assert found == {"debug@4.4.2"}


def test_a_later_folder_replaces_a_file_and_a_later_file_replaces_a_folder(tmp_path: Path) -> None:
    first = layer({"app/package.json": b'{"name": "x", "dependencies": {"ms": "2.1.3"}}',
                   "srv/package-lock.json": LOCK_OK})
    second = layer({"app/package.json/package-lock.json": LOCK_BAD,  # file -> folder
                    "srv": b"now a file"})                            # folder -> file
    image = docker_image(tmp_path / "svc.tar", [first, second])
    files, _ = image_files(image)
    assert sorted(files) == ["app/package.json/package-lock.json"]
    envs = [r for r in walk([image]) if isinstance(r, Environment)]
    assert [(p.name, p.version) for e in envs for p in e.packages] == [("debug", "4.4.2")]


def test_root_level_whiteouts_apply(tmp_path: Path) -> None:
    first = layer({"old/package-lock.json": LOCK_BAD, "keep/package-lock.json": LOCK_OK,
                   ".package-lock.json": LOCK_OK})
    second = layer({".wh.old": b"", "keep/.wh..wh..opq": b""})
    files, _ = image_files(docker_image(tmp_path / "svc.tar", [first, second]))
    assert sorted(files) == [".package-lock.json"]  # a leading dot is part of the name
    third = layer({"x/.wh..wh..opq": b"", "x/package.json": b'{"name": "x"}'})
    files, _ = image_files(docker_image(tmp_path / "b.tar", [first, third]))
    assert sorted(files) == [".package-lock.json", "keep/package-lock.json",
                             "old/package-lock.json", "x/package.json"]


def test_names_never_climb_out_of_the_image(tmp_path: Path) -> None:
    blob = layer({"../../etc/package-lock.json": LOCK_BAD, "/abs/package.json": b"{}"})
    files, _ = image_files(docker_image(tmp_path / "svc.tar", [blob]))
    assert sorted(files) == ["abs/package.json", "etc/package-lock.json"]


def test_zstd_layers_are_a_clear_error(tmp_path: Path) -> None:
    image = docker_image(tmp_path / "svc.tar", [b"\x28\xb5\x2f\xfd" + b"\0" * 600])
    with pytest.raises(InventoryError, match="zstd"):
        image_files(image)


@pytest.mark.parametrize(("limit", "value", "needle"), [
    ("MAX_ENTRIES", 5, "entries"),
    ("MAX_LAYER_BYTES", 1000, "bytes"),
    ("MAX_KEPT_BYTES", 100, "manifests"),
    ("MAX_MEMBERS", 2, "entries"),
    ("MAX_JSON", 10, "larger"),
])
def test_limits_are_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, limit: str,
                           value: int, needle: str) -> None:
    blob = layer({f"p{i}/package-lock.json": LOCK_OK for i in range(10)} | {"big": 5000})
    image = docker_image(tmp_path / "svc.tar", [blob])
    monkeypatch.setattr(image_module, limit, value)
    with pytest.raises(InventoryError, match=needle):
        image_files(image)


def test_a_truncated_layer_is_an_error(tmp_path: Path) -> None:
    blob = layer({"app/package-lock.json": LOCK_BAD, "big": 100_000}, gz=True)
    image = docker_image(tmp_path / "svc.tar", [blob[: len(blob) // 2]])
    errors, found = _walk_with_neighbour(tmp_path, image)
    assert [e.source for e in errors] == [str(image)] and found == {"debug@4.4.2"}


JSON_KEYS = st.sampled_from(["manifests", "layers", "digest", "Layers", "RepoTags", "annotations",
                             "org.opencontainers.image.ref.name", "mediaType"])
JSON_LEAVES = st.one_of(st.none(), st.booleans(), st.integers(), st.sampled_from(
    ["", "sha256:00", "sha256:" + "0" * 64, "l0/layer.tar", "x"]))
JSONISH = st.recursive(JSON_LEAVES, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(JSON_KEYS, inner, max_size=4)), max_leaves=12)


@settings(max_examples=120, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(index=JSONISH, manifest=JSONISH, docker=st.booleans())
def test_fuzz_image_metadata_raises_only_inventory_errors(tmp_path: Path, index: Any,
                                                         manifest: Any, docker: bool) -> None:
    blob = layer({"app/package-lock.json": LOCK_OK})
    mblob = json.dumps(manifest).encode()
    if docker:
        path = write_tar(tmp_path / "f.tar", {"manifest.json": json.dumps(index).encode(),
                                              "l0/layer.tar": blob})
    else:
        path = oci_image(tmp_path / "f.oci", index, {"sha256:" + "0" * 64: mblob,
                                                      "sha256:00": blob})
    with contextlib.suppress(InventoryError):
        image_files(path)


def test_an_image_with_many_layers_is_still_an_image(tmp_path: Path) -> None:
    """docker save writes manifest.json after every layer: the old 50-entry sniff missed it
    and the image was silently read as nothing."""
    layers = [layer({f"l{i}/x": b"x"}) for i in range(30)] + [
        layer({"app/package-lock.json": LOCK_BAD})]
    names = [f"{i:03d}/layer.tar" for i in range(len(layers))]
    members: dict[str, bytes] = {}
    for name, blob in zip(names, layers, strict=True):
        members[name.replace("layer.tar", "VERSION")] = b"1.0"
        members[name.replace("layer.tar", "json")] = b"{}"
        members[name] = blob
    members["manifest.json"] = json.dumps([{"RepoTags": ["many:1"], "Layers": names}]).encode()
    image = write_tar(tmp_path / "many.tar", members)
    envs = [r for r in walk([image]) if isinstance(r, Environment)]
    assert [(p.name, p.version) for e in envs for p in e.packages] == [("debug", "4.4.2")]


@pytest.mark.parametrize(("name", "data", "needle"), [
    ("broken.tar", b"\x00garbage" * 10, "readable tarball"),
    ("notes.txt", b"hello", "not a lockfile"),
])
def test_a_path_nobody_reads_is_an_error_not_nothing(tmp_path: Path, name: str, data: bytes,
                                                     needle: str) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    results = list(walk([path]))
    assert len(results) == 1 and isinstance(results[0], FileError)
    assert needle in results[0].message
