"""``Fleet.record_upload``: an environment posted as bytes (``POST /api/v1/environments``) is
parsed in memory by the same parsers as ``chainwatch inventory``, and anything else is one
UsageError line; nothing touches the server's disk."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from chainwatch.errors import UsageError
from chainwatch.fleet import Fleet
from chainwatch.inventory import upload as upload_mod
from chainwatch.inventory.walk import walk
from chainwatch.model import Environment
from chainwatch.output.inventory import inventory_json
from tests.helpers import SHARED, missing_part

LOCKFILES = SHARED / "corpus" / "lockfiles"
NPM_LOCK = json.dumps({"name": "app", "lockfileVersion": 3, "packages": {
    "": {"dependencies": {"debug": "^4.4.0"}, "devDependencies": {"ms": "^2"}},
    "node_modules/debug": {"version": "4.4.2",
                           "resolved": "https://u:secret@registry.example.invalid/debug.tgz"},
    "node_modules/ms": {"version": "2.1.3", "dev": True}}}).encode()


@pytest.fixture
def fleet(tmp_path: Path) -> Fleet:
    return Fleet(f"sqlite:///{tmp_path / 'cw.db'}")


def held(fleet: Fleet, spec: str) -> set[tuple[str, str, str, bool]]:
    return {(s.label, s.name, s.version, s.dev) for s in fleet.query(spec)}


def test_a_lockfile_is_recorded_as_the_inventory_parses_it(fleet: Fleet) -> None:
    assert fleet.record_upload("ci/app@abc123", "package-lock.json", NPM_LOCK) == 2
    assert held(fleet, "debug@4.4.2") == {("ci/app@abc123", "debug", "4.4.2", False)}
    assert held(fleet, "ms@^2") == {("ci/app@abc123", "ms", "2.1.3", True)}
    (sighting,) = fleet.query("debug@4.4.2")
    assert sighting.source == "package-lock.json" and sighting.path == "(root) > debug"


@pytest.mark.parametrize(("name", "target"), [
    ("npm-cli.package-lock.json", "package-lock.json"),
    ("npm-cli.package-lock.json", "npm-shrinkwrap.json"),
    ("babel.yarn-berry.lock", "yarn.lock"),
    ("excalidraw.yarn-classic.lock", "yarn.lock"),
    ("vite.pnpm-lock.yaml", "pnpm-lock.yaml"),
    ("hono.bun.lock", "bun.lock"),
])
def test_every_lockfile_format_matches_the_inventory_of_the_same_file(
        tmp_path: Path, fleet: Fleet, name: str, target: str) -> None:
    """The oracle: ``chainwatch inventory`` (the walker) on the same bytes as a file."""
    if not LOCKFILES.is_dir():
        missing_part(f"shared corpus not present at {LOCKFILES}")
    body = (LOCKFILES / name).read_bytes()
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / target).write_bytes(body)
    (walked,) = [e for e in walk([folder]) if isinstance(e, Environment)]
    expected = {(p.name, p.version) for p in walked.packages if p.exact}
    uploaded = upload_mod.parse_upload(target, body)
    assert {(p.name, p.version) for e in uploaded for p in e.packages if p.exact} == expected
    assert fleet.record_upload("repo", target, body) == sum(
        1 for p in walked.packages if p.exact)


def test_an_inventory_document_round_trips(tmp_path: Path, fleet: Fleet) -> None:
    envs = upload_mod.parse_upload("package-lock.json", NPM_LOCK)
    doc = inventory_json(envs, []).encode()
    assert fleet.record_upload("from-doc", "inventory.json", doc) == 2
    assert held(fleet, "debug@4.4.2") == {("from-doc", "debug", "4.4.2", False)}
    (sighting,) = fleet.query("debug@4.4.2")
    assert sighting.path == "(root) > debug"


def test_credentials_in_an_upload_are_never_stored(fleet: Fleet) -> None:
    (env,) = upload_mod.parse_upload("package-lock.json", NPM_LOCK)
    assert all("secret" not in (p.resolved or "") for p in env.packages)


@pytest.mark.parametrize("filename", [
    "../../../../etc/passwd", "/etc/shadow", "..", "", "C:\\Windows\\win.ini", "package.json",
    ".package-lock.json", "node_modules/.package-lock.json", "yarn.lock\x00.png",
])
def test_a_file_name_only_chooses_the_parser(tmp_path: Path, fleet: Fleet, filename: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(UsageError) as caught:
        fleet.record_upload("x", filename, b"root:x:0:0:root:/root:/bin/bash\n")
    assert "\n" not in str(caught.value)
    assert sorted(os.listdir(tmp_path)) == before  # nothing written beside it
    assert fleet.environment_count() == 0


def test_a_traversing_name_is_its_last_component(fleet: Fleet) -> None:
    assert fleet.record_upload("x", "..\\..\\../tmp/package-lock.json", NPM_LOCK) == 2
    (sighting,) = fleet.query("debug@4.4.2")
    assert sighting.source == "package-lock.json"


#: a billion laughs: ten aliases of ten aliases ... nine levels deep
LAUGHS = b"l0: &l0 [lol,lol,lol,lol,lol,lol,lol,lol,lol,lol]\n" + b"".join(
    f"l{i}: &l{i} [{','.join([f'*l{i - 1}'] * 10)}]\n".encode() for i in range(1, 10))
DEEP = b'{"schema": "chainwatch.inventory/1", "environments": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"


@pytest.mark.parametrize(("filename", "body", "says"), [
    ("package-lock.json", b"[" * 500_000 + b"]" * 500_000, "nested too deeply"),
    ("inventory.json", DEEP, "not valid JSON"),
    ("package-lock.json", b"\xff\xfe\x00garbage", "package-lock.json"),
    ("package-lock.json", b"   ", "empty"),
    ("package-lock.json", b"5", "not a JSON object"),
    ("pnpm-lock.yaml", LAUGHS, "alias bomb"),
    ("inventory.json", b'{"schema": "chainwatch.inventory/1", "environments": 5}', "not a list"),
    ("inventory.json", b'{"schema": "chainwatch.inventory/1", "environments": [5]}', "not an object"),
    ("inventory.json", b'{"schema": "chainwatch.inventory/1", "environments": [{"packages": "x"}]}',
     "not a list"),
    ("inventory.json", json.dumps({"schema": "chainwatch.inventory/1", "environments": [
        {"packages": [{"name": "../../etc", "version": "1.0.0"}]}]}).encode(), "not a package name"),
    ("inventory.json", json.dumps({"schema": "chainwatch.inventory/1", "environments": [
        {"packages": [{"name": "a", "version": 5}]}]}).encode(), "not an exact version"),
    ("inventory.json", json.dumps({"schema": "chainwatch.inventory/1", "environments": [
        {"packages": [{"name": "a", "version": "1.0.0", "paths": [["x"] * 1000]}]}]}).encode(),
     "a path"),
    ("inventory.json", json.dumps({"schema": "chainwatch.inventory/1", "environments": [
        {"source": "x\x1b[31m", "packages": []}]}).encode(), "not printable"),
    ("inventory.json", json.dumps({"schema": "chainwatch.other/1", "environments": []}).encode(),
     "not a lockfile"),
    ("whatever.json", b'{"lockfileVersion": 3}', "not a lockfile"),
])
def test_hostile_bodies_are_one_usage_line(fleet: Fleet, filename: str, body: bytes,
                                           says: str) -> None:
    with pytest.raises(UsageError) as caught:
        fleet.record_upload("x", filename, body)
    message = str(caught.value)
    assert says in message and "\n" not in message and len(message) < 400
    assert fleet.environment_count() == 0


def test_too_many_packages_or_bytes_are_refused(fleet: Fleet,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(upload_mod, "MAX_FILE_BYTES", 1000)
    with pytest.raises(UsageError, match="larger than 1000 bytes"):
        fleet.record_upload("x", "package-lock.json", b"{" + b" " * 2000 + b"}")
    monkeypatch.setattr(upload_mod, "MAX_FILE_BYTES", 10**8)
    monkeypatch.setattr(upload_mod, "MAX_PACKAGES", 3)
    doc = {"schema": "chainwatch.inventory/1", "environments": [
        {"packages": [{"name": f"p{i}", "version": "1.0.0"} for i in range(2)]}] * 2}
    with pytest.raises(UsageError, match="more than 3 packages"):
        fleet.record_upload("x", "inventory.json", json.dumps(doc).encode())
    assert fleet.environment_count() == 0


@pytest.mark.parametrize("label", ["", "   ", "x" * 513, "a\nb", "a\x00b", "a\u202eb"])
def test_labels_are_bounded(fleet: Fleet, label: str) -> None:
    with pytest.raises(UsageError, match="label"):
        fleet.record_upload(label, "package-lock.json", NPM_LOCK)
    assert fleet.environment_count() == 0
