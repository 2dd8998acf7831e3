"""Verdict memory cannot be weakened by a baseline the user chooses: only a judgement against
the registry history (the gate's and the watcher's) sets or replaces what memory says of a
release; ``scan --against`` is stored only where nothing is, and a release judged against
itself is a usage error. Through the CLI and serve's API, against a loopback fake registry."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from chainwatch.db import connect
from chainwatch.registry import NpmConfig, RegistryClient
from chainwatch.serve.app import create_app
from chainwatch.serve.scans import ScanPool, registry_scan
from chainwatch.verdicts import VerdictStore
from tests.helpers import BENIGN_INDEX, clipper_source, make_tgz, manifest
from tests.hostile.test_verdicts_poisoning import FakeRegistry, project, run, sri
from tests.unit.test_serve_api import TOKEN, post, wait_done

OLD = make_tgz({"package.json": manifest(name="debug", version="4.4.0"),
                "index.js": BENIGN_INDEX})
# the malicious release, and a look-alike baseline that already "had" its payload
EVIL = make_tgz({"package.json": manifest(name="debug", version="4.4.1"),
                 "index.js": clipper_source()})
LOOKALIKE = make_tgz({"package.json": manifest(name="debug", version="1.0.0"),
                      "index.js": clipper_source()})


def publish(registry: FakeRegistry, name: str, releases: dict[str, bytes]) -> None:
    """Several versions of one package (FakeRegistry.publish keeps one)."""
    def ago(days: int) -> str:
        return (datetime.now(UTC) - timedelta(days=days)).isoformat(timespec="seconds")

    when = ago(40 * (len(releases) + 1))
    times = {v: ago(40 * (len(releases) - i)) for i, v in enumerate(releases)}  # a month apart
    versions: dict[str, Any] = {}
    for version, data in releases.items():
        path = f"/{name}/-/{name}-{version}.tgz"
        registry.tarballs[path] = data
        versions[version] = {
            "name": name, "version": version, "_npmUser": {"name": "owner"},
            "dist": {"tarball": registry.url.rstrip("/") + path, "integrity": sri(data),
                     "shasum": hashlib.sha1(data).hexdigest()}}
    registry.packuments[name] = {
        "name": name, "dist-tags": {"latest": list(releases)[-1]},
        "time": {"created": when, "modified": times[list(releases)[-1]], **times},
        "maintainers": [{"name": "owner", "email": "owner@example.invalid"}],
        "versions": versions}


@pytest.fixture()
def registry() -> Iterator[FakeRegistry]:
    fake = FakeRegistry()
    publish(fake, "debug", {"1.0.0": LOOKALIKE, "4.4.0": OLD, "4.4.1": EVIL})
    yield fake
    fake.close()


def stored(db: str, key: str) -> tuple[str, str | None] | None:
    found = VerdictStore(db).by_key(key)
    return (found.level.value, found.baseline) if found is not None else None


def test_a_release_against_itself_is_a_usage_error(tmp_path: Path,
                                                   registry: FakeRegistry) -> None:
    db = f"sqlite:///{tmp_path / 'cw.db'}"
    sample = tmp_path / "debug-4.4.1.tgz"
    sample.write_bytes(EVIL)
    copy = tmp_path / "copy.tgz"
    copy.write_bytes(EVIL)
    r = run("scan", "debug@4.4.1", "--db", db, "--registry", registry.url, home=tmp_path)
    assert r.returncode == 1, r.stderr
    assert stored(db, sri(EVIL)) == ("malicious", "4.4.0")
    for target, against in [(str(sample), str(sample)), (str(sample), str(copy)),
                            ("debug@4.4.1", "debug@4.4.1"), (str(sample), "debug@4.4.1"),
                            ("debug@4.4.1", str(copy))]:
        r = run("scan", target, "--against", against, "--db", db, "--registry", registry.url,
                home=tmp_path)
        assert r.returncode == 2, (target, against, r.stdout, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "against itself" in lines[0], r.stderr
        assert "Traceback" not in r.stderr
    assert stored(db, sri(EVIL)) == ("malicious", "4.4.0")


def test_a_chosen_baseline_never_replaces_the_stored_verdict(tmp_path: Path,
                                                            registry: FakeRegistry) -> None:
    db = f"sqlite:///{tmp_path / 'cw.db'}"
    sample = tmp_path / "debug-4.4.1.tgz"
    sample.write_bytes(EVIL)
    assert run("scan", "debug@4.4.1", "--db", db, "--registry", registry.url,
               home=tmp_path).returncode == 1
    before = VerdictStore(db).by_key(sri(EVIL))
    assert before is not None and before.level.value == "malicious"
    for target, against in [("debug@4.4.1", "debug@1.0.0"), (str(sample), "debug@1.0.0"),
                            ("debug@4.4.1", "none"), (str(sample), "none")]:
        r = run("scan", target, "--against", against, "--db", db, "--registry", registry.url,
                "--format", "json", "--fail-on", "never", home=tmp_path)
        assert r.returncode == 0, r.stderr
        notes = [line for line in r.stderr.splitlines() if "not kept in verdict memory" in line]
        assert len(notes) == 1 and "--against" in notes[0], r.stderr
        after = VerdictStore(db).by_key(sri(EVIL))
        assert after == before, (target, against)
    # the look-alike baseline did weaken this judgement: that is what was refused
    r = run("scan", "debug@4.4.1", "--against", "debug@1.0.0", "--db", db, "--registry",
            registry.url, "--format", "json", "--fail-on", "never", home=tmp_path)
    assert json.loads(r.stdout)["results"][0]["verdict"] != "malicious"


def test_a_chosen_baseline_fills_an_empty_slot_until_the_registry_history_judges(
        tmp_path: Path, registry: FakeRegistry) -> None:
    db = f"sqlite:///{tmp_path / 'cw.db'}"
    r = run("scan", "debug@4.4.1", "--against", "debug@1.0.0", "--db", db, "--registry",
            registry.url, "--fail-on", "never", home=tmp_path)
    assert r.returncode == 0 and "not kept" not in r.stderr, r.stderr
    first = VerdictStore(db).by_key(sri(EVIL))
    assert first is not None and first.baseline == "1.0.0" and first.baseline_chosen
    # the gate's judgement (against the registry history) replaces it
    assert run("scan", "debug@4.4.1", "--db", db, "--registry", registry.url,
               home=tmp_path).returncode == 1
    assert stored(db, sri(EVIL)) == ("malicious", "4.4.0")
    assert not VerdictStore(db).by_key(sri(EVIL)).baseline_chosen  # type: ignore[union-attr]


def test_the_api_neither_weakens_nor_judges_a_release_against_itself(
        tmp_path: Path, registry: FakeRegistry) -> None:
    engine = connect(f"sqlite:///{tmp_path / 'serve.db'}")
    client = RegistryClient(NpmConfig.load(registry.url), tmp_path / "cache")
    scan, close = registry_scan(engine, client)
    app = create_app(engine, token=TOKEN, scans=ScanPool(scan, workers=1))
    store = VerdictStore(engine=engine)
    try:
        job = wait_done(app, post(app, "/api/v1/scans",
                                  json={"target": "debug@4.4.1"}).json()["id"])
        assert job["status"] == "done" and "note" not in job, job
        before = store.by_key(sri(EVIL))
        assert before is not None and before.level.value == "malicious"
        same = post(app, "/api/v1/scans", json={"target": "debug@4.4.1",
                                                "against": "debug@4.4.1"})
        assert same.status_code == 422 and "itself" in same.json()["error"]
        # a range resolving to the same release: refused by the scanner, one line
        job = wait_done(app, post(app, "/api/v1/scans", json={
            "target": "debug@4.4.1", "against": "debug@>=4.4.1 <4.4.2"}).json()["id"])
        assert job["status"] == "failed" and "against itself" in job["error"], job
        for against in ("debug@1.0.0", "none"):
            job = wait_done(app, post(app, "/api/v1/scans", json={
                "target": "debug@4.4.1", "against": against}).json()["id"])
            assert job["status"] == "done", job
            assert "not kept in verdict memory" in job["note"], job
            assert job["verdict_key"] == sri(EVIL)
            assert store.by_key(sri(EVIL)) == before
    finally:
        close()
        client.close()


def test_the_gate_does_not_pass_a_release_on_a_chosen_baseline_verdict(
        tmp_path: Path, registry: FakeRegistry) -> None:
    """Stored where nothing was, a benign verdict against a look-alike baseline does not let
    the release through: the gate judges it against its registry history and replaces it."""
    db = f"sqlite:///{tmp_path / 'cw.db'}"
    r = run("scan", "debug@4.4.1", "--against", "debug@1.0.0", "--db", db, "--registry",
            registry.url, "--fail-on", "never", home=tmp_path)
    assert r.returncode == 0, r.stderr
    first = VerdictStore(db).by_key(sri(EVIL))
    assert first is not None and first.level.value != "malicious" and first.baseline_chosen
    app = project(tmp_path / "app", "debug", "4.4.1")
    check = run("check", str(app), "--db", db, "--registry", registry.url, "--format", "json",
                home=tmp_path)
    assert check.returncode == 1, check.stdout + check.stderr
    decisions = json.loads(check.stdout)["decisions"]
    assert [(d["action"], d["rule"]) for d in decisions if d["name"] == "debug"] == [
        ("block", "scan-malicious")], decisions
    assert stored(db, sri(EVIL)) == ("malicious", "4.4.0")


def test_the_store_keeps_the_rule_for_every_caller(tmp_path: Path) -> None:
    """VerdictStore.keep, the one place: a chosen baseline fills an empty slot only, the
    registry history's judgement replaces it, and the note is one line whatever the package
    author wrote into the stored message."""
    from dataclasses import replace

    from chainwatch.model import Finding, Level, PackageRef, Severity, Verdict

    store = VerdictStore(f"sqlite:///{tmp_path / 'cw.db'}")
    evil = Verdict(PackageRef("x", "1.0.1"), Level.MALICIOUS, 100, "bad", (Finding(
        "CW-X", Severity.CRITICAL, "t", "c", "line one\nnote: forged\r\x1b[2Jline two"),), (),
        baseline=PackageRef("x", "1.0.0"), integrity="sha512-AAAA")
    benign = replace(evil, level=Level.BENIGN, score=0, findings=(),
                     baseline=PackageRef("x", "0.0.1"), baseline_chosen=True)
    assert store.keep(evil).kept
    refused = store.keep(benign)
    assert not refused.kept and refused.stored.level is Level.MALICIOUS
    note = refused.note()
    assert note is not None and "\n" not in note and "\r" not in note
    assert store.keep(replace(benign, baseline=None)).kept is False  # --against none
    assert store.by_key("sha512-AAAA").level is Level.MALICIOUS  # type: ignore[union-attr]
    # on an empty slot it is stored, and the registry history's judgement replaces it
    other = replace(benign, integrity="sha512-BBBB")
    assert store.keep(other).kept
    assert store.keep(replace(other, level=Level.MALICIOUS, baseline_chosen=False)).kept
    assert store.by_key("sha512-BBBB").level is Level.MALICIOUS  # type: ignore[union-attr]
