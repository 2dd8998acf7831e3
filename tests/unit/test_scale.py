"""The Dask task and its client-side bookkeeping, without a cluster: the task is a plain
function of (target, options), a failure is a record, and names come back as the user gave them."""

from __future__ import annotations

import pickle
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from chainwatch.model import Level
from chainwatch.output.jsonout import Failed
from chainwatch.registry import NpmConfig
from chainwatch.scale import cluster
from chainwatch.scale.task import ScanOptions, TaskResult, scan_target

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = str(ROOT / "examples" / "left-padder-1.0.1")
BASE = str(ROOT / "examples" / "left-padder-1.0.0")


def options(tmp_path: Path, db: str | None = None) -> ScanOptions:
    return ScanOptions(config=NpmConfig(registry="http://registry.invalid/"),
                       cache_dir=str(tmp_path / "cache"), offline=True, db=db)


def test_the_task_returns_a_picklable_verdict_and_a_failure_record(tmp_path: Path) -> None:
    result = scan_target(EXAMPLE, BASE, options(tmp_path))
    assert not isinstance(result.outcome, Failed) and result.outcome.level is Level.MALICIOUS
    back = pickle.loads(pickle.dumps(result))  # what crosses from a worker to the client
    assert back == result
    missing = scan_target(str(tmp_path / "nope-1.0.0.tgz"), "none", options(tmp_path))
    assert isinstance(missing.outcome, Failed) and missing.outcome.exit_code == 2
    assert "no such file or folder" in missing.outcome.error


def test_a_known_bad_database_the_worker_cannot_see_fails_the_target(tmp_path: Path) -> None:
    absent = f"sqlite:///{tmp_path / 'elsewhere' / 'chainwatch.db'}"
    result = scan_target(EXAMPLE, BASE, options(tmp_path, db=absent))
    assert isinstance(result.outcome, Failed) and result.outcome.exit_code == 2
    assert "not reachable from the Dask worker" in result.outcome.error


def test_relative_paths_travel_absolute_and_come_back_as_given(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch
                                                               ) -> None:
    monkeypatch.chdir(ROOT)
    shipped = cluster._absolute("examples/left-padder-1.0.1")
    assert shipped == EXAMPLE
    assert cluster._absolute("left-pad@1.3.0") == "left-pad@1.3.0"
    assert cluster._absolute("none") == "none"
    verdict = scan_target(EXAMPLE, BASE, options(tmp_path)).outcome
    assert not isinstance(verdict, Failed) and verdict.source == EXAMPLE
    given = cluster._as_given(verdict, EXAMPLE, "examples/left-padder-1.0.1")
    assert given == replace(verdict, source="examples/left-padder-1.0.1")
    failed = cluster._as_given(Failed(EXAMPLE, f"{EXAMPLE}: gone", 2), EXAMPLE, "examples/x")
    assert failed == Failed("examples/x", "examples/x: gone", 2)


def test_a_task_that_never_answered_is_one_line_with_its_exit_code() -> None:
    class KilledWorker(Exception):
        pass

    died = cluster._failure("a@1.0.0", KilledWorker("gone"), retries=2)
    assert died.exit_code == 2 and "died" in died.error and "3 times" in died.error
    crashed = cluster._failure("https://tok@h.invalid/x.tgz", RuntimeError("bad\nthing"), 1)
    assert crashed.target == "https://***@h.invalid/x.tgz" and "\n" not in crashed.error
    assert "failed 2 times on the Dask cluster" in crashed.error
    net = cluster._failure("a@1.0.0", ConnectionError("reset"), 0)
    assert net.exit_code == 3
    assert TaskResult(net).notices == ()


class _NoWorkerLeft:
    """A client of a cluster whose every worker has died: tasks never finish."""

    def scheduler_info(self) -> dict[str, Any]:
        return {"workers": {}}

    def scatter(self, value: Any, broadcast: bool = False) -> Any:
        return value

    def submit(self, *args: Any, **kwargs: Any) -> _Never:
        return _Never()

    def cancel(self, futures: Any) -> None:
        pass


class _Never:
    def result(self, timeout: float | None = None) -> Any:
        time.sleep(timeout or 0)
        raise TimeoutError

    def release(self) -> None:
        pass


def test_with_every_worker_gone_the_targets_fail_instead_of_waiting_forever(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: `scan --dask` (and `watch --dask`) waited forever, silent, once the cluster's
    last worker was killed mid-run (found by a reviewer with SIGKILL on the only worker)."""
    from types import SimpleNamespace

    monkeypatch.setattr(cluster, "LOST_TIMEOUT", 0.3)
    monkeypatch.setattr(cluster, "POLL", 0.05)

    def wait(pending: Any, timeout: float, return_when: str) -> Any:
        time.sleep(timeout)
        raise TimeoutError

    monkeypatch.setattr(cluster, "_dask", lambda: SimpleNamespace(wait=wait))
    client: Any = _NoWorkerLeft()
    got = list(cluster.scan_all(client, ["a@1.0.0", "b@2.0.0"], None, options(tmp_path)))
    assert sorted(i for i, _ in got) == [0, 1]  # every target answered, once
    for _, result in got:
        assert isinstance(result.outcome, Failed) and result.outcome.exit_code == 2
        assert "no Dask worker was left in the cluster" in result.outcome.error
    executor = cluster.DaskScanExecutor(client, options(tmp_path), in_flight=1)
    with pytest.raises(cluster.ScanFailed, match="no Dask worker was left in the cluster"):
        executor.scan("a@1.0.0", None)


def test_a_relative_sqlite_store_travels_absolute(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker's working folder is not ours: ``--db sqlite:///x.db`` reaches it as the file
    the client means (it failed closed on every worker before)."""
    from chainwatch.cli.scale import known_bad_url
    from chainwatch.db import connect

    monkeypatch.chdir(tmp_path)
    connect("sqlite:///x.db").dispose()  # something stored: the workers must read it
    (tmp_path / "x.db").touch()
    shipped = known_bad_url("sqlite:///x.db")
    assert shipped == f"sqlite:///{tmp_path / 'x.db'}"
    assert known_bad_url("sqlite:///:memory:") in (None, "sqlite:///:memory:")
    monkeypatch.chdir(ROOT)  # a worker elsewhere still opens the client's file
    result = scan_target(EXAMPLE, BASE, options(tmp_path, db=shipped))
    assert not isinstance(result.outcome, Failed), result.outcome
