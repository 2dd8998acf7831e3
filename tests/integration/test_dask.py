"""``scan --dask``: a real ``dask scheduler`` and two ``dask worker`` processes on loopback
give the same documents, verdicts and verdict memory as a local run; a task that raises is
retried, then reported as a failed target; ``--dask local`` works; an unreachable scheduler is
one line and exit 2."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from chainwatch.errors import UsageError
from chainwatch.output.jsonout import Failed
from chainwatch.scale.task import ScanOptions, TaskResult, scan_target
from chainwatch.verdicts import VerdictStore
from tests.cli_runner import chainwatch, clean_env
from tests.helpers import BENIGN_INDEX, clipper_source, make_tgz, manifest, missing_part

ROOT = Path(__file__).resolve().parents[2]
DASK = Path(sys.executable).parent / "dask"

pytestmark = pytest.mark.integration


def _dask_needed() -> None:
    try:
        import distributed  # noqa: F401
    except ImportError:
        missing_part("dask and distributed are not installed (pip install -e '.[dev]')")
    if not DASK.exists():
        missing_part(f"no dask command at {DASK}")


@pytest.fixture(scope="module")
def scheduler(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The address of a real scheduler with two single-threaded worker processes, whose
    working folder is not the tests' (they see targets through absolute paths only)."""
    _dask_needed()
    import distributed

    root = tmp_path_factory.mktemp("dask")
    env = clean_env(root)
    file = root / "scheduler.json"
    procs = [subprocess.Popen([str(DASK), "scheduler", "--host", "127.0.0.1", "--port", "0",
                               "--no-dashboard", "--scheduler-file", str(file)], cwd=root,
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        deadline = time.monotonic() + 60
        while not file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert file.exists(), "the dask scheduler did not start"
        for n in range(2):
            folder = root / f"worker{n}"
            folder.mkdir()
            procs.append(subprocess.Popen(
                [str(DASK), "worker", "--scheduler-file", str(file), "--nworkers", "1",
                 "--nthreads", "1", "--host", "127.0.0.1", "--no-dashboard",
                 "--local-directory", str(folder)], cwd=folder, env=env,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        address = json.loads(file.read_text())["address"]
        with distributed.Client(address, timeout=30) as client:
            client.wait_for_workers(2, timeout=90)
        yield address
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="module")
def targets(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Inert local packages of uneven size: benign, a clipper replica, a folder, a missing file."""
    root = tmp_path_factory.mktemp("targets")
    big = "\n".join(f"export function f{i}(a, b) {{ return a + b * {i}; }}" for i in range(20000))
    packages: dict[str, dict[str, str | bytes]] = {
        "padder-1.0.0.tgz": {"package.json": manifest("left-padder", "1.0.0"),
                             "index.js": BENIGN_INDEX},
        "padder-1.0.1.tgz": {"package.json": manifest("left-padder", "1.0.1"),
                             "index.js": clipper_source()},
        "big-2.0.0.tgz": {"package.json": manifest("big-util", "2.0.0"),
                          "index.js": BENIGN_INDEX, "lib/all.js": big},
        "tiny-0.1.0.tgz": {"package.json": manifest("tiny-util", "0.1.0"),
                           "index.js": "module.exports = 1;\n"},
    }
    for name, files in packages.items():
        (root / name).write_bytes(make_tgz(files))
    return [*(str(root / name) for name in packages),
            "examples/left-padder-1.0.1",  # relative: the workers' folder is elsewhere
            str(root / "missing-9.9.9.tgz")]


def _scan(args: list[str], home: Path, *extra: str) -> tuple[subprocess.CompletedProcess[str],
                                                                dict[str, Any]]:
    home.mkdir(parents=True, exist_ok=True)
    db = f"sqlite:///{home / 'memory.db'}"
    run = chainwatch("scan", *args, "--against", "none", "--offline", "-f", "json", "--db", db,
                     *extra, env=clean_env(home), cwd=ROOT, real=True, timeout=300)
    assert run.stdout, run.stderr
    return run, json.loads(run.stdout)


def _timeless(doc: dict[str, Any]) -> dict[str, Any]:
    doc = json.loads(json.dumps(doc))
    for result in doc["results"]:
        result.pop("elapsed_seconds", None)
    return doc


def _memory(home: Path, names: list[str]) -> list[tuple[Any, ...]]:
    store = VerdictStore(f"sqlite:///{home / 'memory.db'}")
    rows = []
    for name in names:
        for v in store.for_package(name):
            document = {k: x for k, x in v.document.items() if k != "elapsed_seconds"}
            rows.append((v.key, v.package, v.version, v.integrity, v.level.value, v.score,
                         v.baseline, v.explanation, v.top_rule, json.dumps(document,
                                                                          sort_keys=True)))
    return sorted(rows)


PACKAGES = ["left-padder", "big-util", "tiny-util"]


def test_cluster_gives_the_local_documents_verdicts_and_memory(
        scheduler: str, targets: list[str], tmp_path: Path) -> None:
    local, local_doc = _scan(targets, tmp_path / "local")
    dask, dask_doc = _scan(targets, tmp_path / "dask", "--dask", scheduler)
    assert dask.returncode == local.returncode == 1, dask.stderr  # malicious + a failed target
    assert _timeless(dask_doc) == _timeless(local_doc)
    verdicts = {r.get("package"): r.get("verdict") for r in dask_doc["results"]}
    assert verdicts["left-padder"] == "malicious" and verdicts["tiny-util"] == "benign"
    failed = [r for r in dask_doc["results"] if r["schema"] == "chainwatch.scan-error/1"]
    assert [f["target"] for f in failed] == [targets[-1]] and failed[0]["exit_code"] == 2
    assert f"error: {targets[-1]}" in dask.stderr and "Traceback" not in dask.stderr
    memory = _memory(tmp_path / "dask", PACKAGES)
    assert memory and memory == _memory(tmp_path / "local", PACKAGES)


def _counting(log: Path, fail_times: int) -> Callable[..., TaskResult]:
    """A task that raises on its first ``fail_times`` attempts, then scans for real."""

    def task(spec: str, against: str | None, options: ScanOptions,
             packument: dict[str, Any] | None) -> TaskResult:
        with log.open("a") as f:
            f.write(f"{os.getpid()}\n")
        if len(log.read_text().splitlines()) <= fail_times:
            raise RuntimeError(f"injected fault scanning {spec}")
        return scan_target(spec, against, options, packument)

    return task


def test_a_task_that_raises_is_retried_then_reported_failed(
        scheduler: str, targets: list[str], tmp_path: Path) -> None:
    import cloudpickle
    import distributed

    from chainwatch.registry import NpmConfig
    from chainwatch.scale.cluster import scan_all

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    options = ScanOptions(config=NpmConfig(), cache_dir=str(tmp_path / "cache"), offline=True)
    with distributed.Client(scheduler, timeout=30) as client:
        once = tmp_path / "once.log"
        [(i, result)] = list(scan_all(client, [targets[1]], "none", options, retries=1,
                                      task=_counting(once, fail_times=1)))
        assert len(once.read_text().splitlines()) == 2  # failed, retried, scanned
        assert i == 0 and not isinstance(result.outcome, Failed)
        assert result.outcome.level.value == "malicious"

        always = tmp_path / "always.log"
        [(i, result)] = list(scan_all(client, [targets[0]], "none", options, retries=2,
                                      task=_counting(always, fail_times=99)))
        assert len(always.read_text().splitlines()) == 3  # the first try and two retries
        assert isinstance(result.outcome, Failed)
        assert result.outcome.target == targets[0] and result.outcome.exit_code == 2
        assert "injected fault" in result.outcome.error and "3 times" in result.outcome.error
        assert "\n" not in result.outcome.error


def test_dask_local_starts_and_closes_its_own_cluster(targets: list[str], tmp_path: Path) -> None:
    _dask_needed()
    chosen = [targets[1], targets[3], targets[4]]
    local, local_doc = _scan(chosen, tmp_path / "local")
    dask, dask_doc = _scan(chosen, tmp_path / "dask", "--dask", "local")
    assert dask.returncode == local.returncode == 1, dask.stderr
    assert _timeless(dask_doc) == _timeless(local_doc)
    assert "Traceback" not in dask.stderr and "distributed" not in dask.stderr, dask.stderr


def test_an_unreachable_scheduler_is_one_line_and_exit_2(tmp_path: Path) -> None:
    _dask_needed()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    started = time.monotonic()
    run = chainwatch("scan", "examples/left-padder-1.0.1", "--dask", f"tcp://127.0.0.1:{port}",
                     env=clean_env(tmp_path), cwd=ROOT, real=True, timeout=120)
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.strip().count("\n") == 0, run.stderr
    assert run.stderr.startswith(f"error: --dask tcp://127.0.0.1:{port}: no Dask scheduler")
    assert time.monotonic() - started < 60


@pytest.mark.parametrize("address", ["tcp://127.0.0.1:notaport", "scheduler here",
                                     "http://scheduler.invalid:8786"])
def test_a_malformed_scheduler_address_is_said_as_such(tmp_path: Path, address: str) -> None:
    _dask_needed()
    run = chainwatch("scan", "examples/left-padder-1.0.1", "--dask", address,
                     env=clean_env(tmp_path), cwd=ROOT, real=True, timeout=120)
    assert run.returncode == 2 and run.stdout == "" and "Traceback" not in run.stderr
    assert run.stderr.startswith(f"error: --dask {address}: not a scheduler address ("), \
        run.stderr


def test_watch_with_an_unreachable_scheduler_is_one_line_and_exit_2(tmp_path: Path) -> None:
    _dask_needed()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "list.txt").write_text("left-pad\n")
    run = chainwatch("watch", "--packages", str(tmp_path / "list.txt"), "--once", "--db",
                     f"sqlite:///{tmp_path / 'w.db'}", "--dask", f"tcp://127.0.0.1:{port}",
                     env=clean_env(tmp_path), cwd=ROOT, real=True, timeout=120)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert run.stderr.strip().splitlines()[-1].startswith(
        f"error: --dask tcp://127.0.0.1:{port}: no Dask scheduler"), run.stderr


def test_dask_missing_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from chainwatch.scale import cluster

    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(UsageError, match=r"pip install 'chainwatch\[dask\]'"):
        with cluster.connect("tcp://127.0.0.1:1"):
            pass


def _watch(tmp_path: Path, registry: Any, executor: Any, clock: list[float]) -> Any:
    from chainwatch.db import connect
    from chainwatch.registry import NpmConfig, RegistryClient
    from chainwatch.scan import Scanner
    from chainwatch.watch.state import WatchState
    from chainwatch.watch.watcher import WatchConfig, Watcher

    tmp_path.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{tmp_path / 'watch.db'}"
    client = RegistryClient(NpmConfig(registry=registry.url), tmp_path / "cache", retries=0)
    sink = _Recorder()
    watcher = Watcher(WatchState(connect(url)), client, Scanner(client, workers=1),
                      VerdictStore(url), [sink], WatchConfig(interval=60.0, hot_interval=60.0),
                      clock=lambda: clock[0], scan_executor=executor)
    return watcher, sink


class _Recorder:
    name = "recorder"

    def __init__(self) -> None:
        self.got: list[dict[str, Any]] = []

    def send(self, alert: dict[str, Any]) -> None:
        self.got.append(alert)


def test_watch_scans_on_the_cluster_and_alerts_once(scheduler: str, tmp_path: Path) -> None:
    """Polling and alerts in this process, the scans on two worker processes: the verdicts
    and alerts of a local watcher, each alert once, and a second pass repeats nothing."""
    import distributed

    from chainwatch.registry import NpmConfig
    from chainwatch.scale.cluster import DaskScanExecutor
    from tests.integration.static_registry import StaticRegistry

    t0 = time.time() - 90 * 86400
    registry = StaticRegistry()
    names = [f"watched-{i}" for i in range(8)]
    try:
        for name in names:
            registry.publish(name, "1.0.0", {"index.js": BENIGN_INDEX}, t0)
        clock = [time.time()]
        options = ScanOptions(config=NpmConfig(registry=registry.url),
                              cache_dir=str(tmp_path / "worker-cache"))
        with distributed.Client(scheduler, timeout=30) as client:
            executor = DaskScanExecutor(client, options)
            assert executor.in_flight == 4  # two single-threaded workers, two each
            remote, remote_sink = _watch(tmp_path / "dask", registry, executor, clock)
            local, local_sink = _watch(tmp_path / "local", registry, None, clock)
            for watcher in (remote, local):
                watcher.watch(names, hot=set())
                assert watcher.run_once()["scanned"] == 0  # the baseline
            for i, name in enumerate(names):
                code = BENIGN_INDEX + clipper_source() if i % 2 else BENIGN_INDEX + "\n// 2\n"
                registry.publish(name, "1.0.1", {"index.js": code}, clock[0] - 30)
            clock[0] += 120
            assert remote.run_once() == local.run_once() == {
                "polled": 8, "scanned": 8, "delivered": 5}  # 4 releases, 1 burst by alice
            clock[0] += 120
            assert remote.run_once()["scanned"] == 0 and remote_sink.got[5:] == []
    finally:
        registry.close()

    def summary(sink: _Recorder) -> list[tuple[str, str, int]]:
        return sorted((a["id"], a["verdict"], a.get("score", -1)) for a in sink.got)

    assert summary(remote_sink) == summary(local_sink)
    assert [a for a in summary(remote_sink) if a[0].startswith("release:")] == [
        (f"release:watched-{i}@1.0.1", "malicious", 100) for i in (1, 3, 5, 7)]
    stored = [(v.package, v.version, v.level, v.score) for n in names
              for v in VerdictStore(f"sqlite:///{tmp_path / 'dask' / 'watch.db'}").for_package(n)]
    assert len(stored) == 8 and stored == [
        (v.package, v.version, v.level, v.score) for n in names
        for v in VerdictStore(f"sqlite:///{tmp_path / 'local' / 'watch.db'}").for_package(n)]
