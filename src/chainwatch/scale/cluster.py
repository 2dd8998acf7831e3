"""The client side of ``scan --dask`` and ``watch --dask``: connect, submit, collect.

One target is one task (``task.scan_target``). Tasks are submitted with ``retries=``; a task
that still raises, or whose workers keep dying, becomes a ``Failed`` outcome with one line
saying why, so a target is never lost. Targets whose size is known (local tarballs) get that
size as their priority, so the largest start first and Dask's work stealing evens out the
rest. ``local`` starts a ``LocalCluster`` of one single-threaded worker process per core,
closed when the run ends (an interrupted run's worker processes exit with their parent).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chainwatch.errors import ChainwatchError, UsageError, describe_failure, one_line
from chainwatch.output.jsonout import Failed
from chainwatch.scale.task import ScanOptions, TaskResult, scan_target
from chainwatch.specs import redact_credentials

if TYPE_CHECKING:
    from distributed import Client

    from chainwatch.model import Verdict

log = logging.getLogger("chainwatch.scale")

#: Seconds to reach the scheduler, and then to see at least one worker.
CONNECT_TIMEOUT = 10.0
#: Extra tries of a task that raised (or whose worker died) before its target is failed.
RETRIES = 2
#: Seconds a run waits with no worker left in the cluster before the targets it still waits
#: for are failed (a worker restarting after a crash rejoins well within it).
LOST_TIMEOUT = 30.0
#: How often a waiting run asks the scheduler whether any worker is left.
POLL = 2.0

Task = Callable[..., TaskResult]


class ScanFailed(ChainwatchError):
    """A target the cluster could not scan (``watch --dask``: recorded like a local failure)."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _dask() -> Any:
    try:
        import distributed
    except ImportError as exc:
        raise UsageError("--dask needs Dask and distributed: pip install 'chainwatch[dask]'"
                         ) from exc
    return distributed



def _check_address(address: str, where: str) -> None:
    """A malformed address is a usage error said as such (not "no scheduler answered")."""
    from distributed.comm.addressing import parse_address, parse_host_port

    try:
        scheme, location = parse_address(address, strict=False)
        if scheme not in ("tcp", "tls"):
            raise ValueError(f"scheme {scheme!r} is not tcp or tls")
        parse_host_port(location)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"--dask {where}: not a scheduler address ({one_line(exc)}); give "
                         "tcp://host:port (or host:port, tls://host:port), or 'local'") from exc

@contextlib.contextmanager
def connect(address: str, timeout: float = CONNECT_TIMEOUT,
            workers: int | None = None) -> Iterator[Client]:
    """A client of the scheduler at ``address`` (``tcp://host:port``, ``tls://…``, or
    ``host:port``), or of a new ``LocalCluster`` for ``local``. A scheduler that does not
    answer, or has no worker, within ``timeout`` seconds is a ``UsageError`` (exit 2)."""
    distributed = _dask()
    # the scheduler and nannies of a LocalCluster live in this process: their chatter (and the
    # tracebacks they log while closing) is not for the user; -v lets it through
    if not log.isEnabledFor(logging.DEBUG):
        for name in ("distributed", "tornado", "bokeh"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
        warnings.filterwarnings("ignore", module=r"distributed(\.|$)")
    where = redact_credentials(address)
    if address == "local":
        n = workers or os.cpu_count() or 1
        try:
            cluster = distributed.LocalCluster(
                n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
                # its HTTP server on a free loopback port: never a clash with another cluster's
                dashboard_address="127.0.0.1:0", silence_logs=logging.CRITICAL)
        except (OSError, TimeoutError, RuntimeError) as exc:
            raise UsageError(f"--dask local: could not start a local Dask cluster "
                             f"({one_line(exc)})") from exc
        try:
            client = distributed.Client(cluster, timeout=timeout)
            try:
                yield client
            finally:
                client.close()
        finally:
            cluster.close()
        return
    _check_address(address, where)
    try:
        client = distributed.Client(address, timeout=timeout)
    except (OSError, TimeoutError, ValueError, TypeError) as exc:
        raise UsageError(f"--dask {where}: no Dask scheduler answered there within "
                         f"{timeout:.0f} s ({one_line(exc)})") from exc
    try:
        try:
            client.wait_for_workers(1, timeout=timeout)
        except (OSError, TimeoutError) as exc:
            raise UsageError(f"--dask {where}: the scheduler has no worker (none joined "
                             f"within {timeout:.0f} s)") from exc
        yield client
    finally:
        client.close()


def _absolute(spec: str | None) -> str | None:
    """A local path as an absolute one: a worker's working folder is not ours (a remote
    worker sees a local target only through a filesystem shared at the same path)."""
    if spec is None or spec.lower() == "none":
        return spec
    with contextlib.suppress(OSError, ValueError):
        path = Path(spec)
        if not path.is_absolute() and path.exists():
            return str(path.resolve())
    return spec


def _as_given(outcome: Verdict | Failed, shipped: str, given: str) -> Verdict | Failed:
    """The outcome named as the user named the target (a local run's ``source``)."""
    if shipped == given:
        return outcome
    if isinstance(outcome, Failed):
        return replace(outcome, target=redact_credentials(given),
                       error=outcome.error.replace(shipped, given))
    return replace(outcome, source=given) if outcome.source == shipped else outcome


def _size(spec: str) -> int:
    """Bytes of a local tarball target (its priority: largest first); 0 when unknown."""
    with contextlib.suppress(OSError, ValueError):
        path = Path(spec)
        if path.is_file():
            return path.stat().st_size
    return 0


def _failure(spec: str, exc: BaseException, retries: int) -> Failed:
    """One line for a task that never returned an answer."""
    name = type(exc).__name__
    if name == "KilledWorker":
        message, code = ("the Dask workers scanning it died (out of memory, or killed) "
                         f"{retries + 1} times"), 2
    elif name in ("CancelledError", "FutureCancelledError"):
        message, code = "the Dask scheduler lost the task (it restarted or was shut down)", 3
    else:
        message, code = describe_failure(exc)
        message += f" (failed {retries + 1} times on the Dask cluster)"
    return Failed(redact_credentials(spec), message, code)


def scan_all(client: Client, specs: Sequence[str], against: str | None,
             options: ScanOptions, packument: dict[str, Any] | None = None,
             retries: int = RETRIES, task: Task = scan_target
             ) -> Iterator[tuple[int, TaskResult]]:
    """Each target one task; yields (its index, its result) as tasks finish: every index
    exactly once, a failure included."""
    run = uuid.uuid4().hex[:12]
    doc = client.scatter(packument, broadcast=True) if packument is not None else None
    shipped = [_absolute(spec) or spec for spec in specs]
    futures = {}
    for i, spec in enumerate(shipped):
        future = client.submit(task, spec, _absolute(against), options, doc,
                               key=f"chainwatch-scan-{run}-{i}", retries=retries,
                               priority=_size(spec), pure=False)
        futures[future] = i
    distributed = _dask()
    pending = set(futures)
    lost = _LostWorkers(client)
    try:
        while pending:
            try:
                done, pending = distributed.wait(pending, timeout=POLL,
                                                 return_when="FIRST_COMPLETED")
            except TimeoutError:
                done = set()
            for future in done:
                i = futures[future]
                try:
                    result = future.result()
                    if not isinstance(result, TaskResult):
                        raise TypeError(f"a task answered {type(result).__name__}")
                except Exception as exc:  # the task's own error, re-raised here by Dask
                    result = TaskResult(_failure(specs[i], exc, retries))
                future.release()
                yield i, replace(result, outcome=_as_given(result.outcome, shipped[i], specs[i]))
            if pending and not done and lost.for_too_long():
                for future in sorted(pending, key=futures.__getitem__):
                    i = futures[future]
                    yield i, TaskResult(Failed(redact_credentials(specs[i]), lost.message, 2))
                return
    finally:
        client.cancel(list(futures))


class _LostWorkers:
    """Whether the cluster has had no worker for ``LOST_TIMEOUT`` seconds (all of them died
    or left): a run then fails what it still waits for instead of waiting forever."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.since: float | None = None
        self.message = (f"no Dask worker was left in the cluster for {LOST_TIMEOUT:.0f} s, so "
                        "this target was not scanned (the workers died or were stopped)")

    def for_too_long(self) -> bool:
        try:
            workers = len(self.client.scheduler_info().get("workers", {}))
        except Exception:  # the scheduler itself is gone: its tasks fail on their own
            workers = 0
        if workers:
            self.since = None
            return False
        now = time.monotonic()
        if self.since is None:
            self.since = now
        return now - self.since >= LOST_TIMEOUT


class DaskScanExecutor:
    """``watch --dask``: the watcher's scan stage on the cluster. ``scan`` blocks its caller
    (one of ``in_flight`` watcher threads) until the verdict is back; polling, the change
    feed, the database and delivery stay in the watcher's process."""

    def __init__(self, client: Client, options: ScanOptions, in_flight: int | None = None,
                 retries: int = RETRIES, task: Task = scan_target) -> None:
        self.client = client
        self.options = options
        self.retries = retries
        self.task = task
        if in_flight is None:
            threads = sum(int(w.get("nthreads", 1))
                          for w in client.scheduler_info().get("workers", {}).values())
            in_flight = 2 * max(threads, 1)  # each worker has a task queued behind its own
        self.in_flight = max(1, in_flight)

    def scan(self, spec: str, packument: dict[str, Any] | None) -> Verdict:
        future = self.client.submit(self.task, spec, None, self.options, packument,
                                    key=f"chainwatch-watch-{uuid.uuid4().hex}",
                                    retries=self.retries, pure=False)
        lost = _LostWorkers(self.client)
        try:
            try:
                while True:
                    try:
                        result = future.result(timeout=POLL)
                        break
                    except TimeoutError:
                        if lost.for_too_long():
                            raise ScanFailed(lost.message) from None
            except ScanFailed:
                raise
            except Exception as exc:
                failed = _failure(spec, exc, self.retries)
                raise ScanFailed(failed.error, failed.exit_code) from exc
        finally:
            future.release()
        if isinstance(result.outcome, Failed):
            raise ScanFailed(result.outcome.error, result.outcome.exit_code)
        for notice in result.notices:
            log.info("%s", notice)
        return result.outcome
