"""Scan verdicts for the gate: from verdict memory, or by scanning a release once and storing it.

Only releases published within the policy's scan window are scanned on demand; older ones are
judged by the known-bad lists and by whatever verdict memory already holds. Scans run in a
bounded pool of worker threads with a bounded queue; concurrent requests for the same release
wait for one scan instead of starting several. A scan that fails (any exception, a timeout, a
full queue, no room in the memory budget) raises ``ScanFailed``; the failure is remembered for
``FAILURE_SECONDS`` so that retries are answered at once instead of rescanning in a loop.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from chainwatch.analysis.metadata import parse_time
from chainwatch.errors import ChainwatchError
from chainwatch.model import Level, Verdict
from chainwatch.packument import baseline_version, release_from_packument
from chainwatch.verdictkeys import verdict_key

if TYPE_CHECKING:  # a gate that scans nothing and stores nothing loads none of these
    from chainwatch.archive.limits import Limits
    from chainwatch.gate.budget import MemoryBudget
    from chainwatch.registry.client import RegistryClient
    from chainwatch.verdicts import StoredVerdict

log = logging.getLogger("chainwatch.gate")
#: How long one read of a package's stored verdicts is reused before the database is asked again.
SNAPSHOT_SECONDS = 5.0
#: How long a failed scan is answered from memory before the release is scanned again.
FAILURE_SECONDS = 60.0
#: Scans running at once, scans waiting beyond them, and how long a caller waits for one.
SCAN_WORKERS = 2
SCAN_QUEUE = 32
SCAN_TIMEOUT = 300.0
#: What a scan holds besides its archives (rules, parsers, the verdict), reserved for every scan.
SCAN_RESERVE = 96 * 1024 * 1024
#: Bytes held per byte an archive unpacks to: the compressed download (at most as large), the
#: unpacked files, and their decoded text during analysis (measure: bench/proxy_memory.py).
UNPACKED_FACTOR = 2
#: What an archive may unpack to when the packument does not say (``dist.unpackedSize``).
DEFAULT_UNPACKED = 64 * 1024 * 1024
#: The unpacked size an archive may reach beyond what the packument claims (rounding, entries).
UNPACKED_SLACK = 1.25


def declared_unpacked(doc: dict[str, Any], version: str) -> int | None:
    """``dist.unpackedSize`` of ``version``, None when absent or not a positive number."""
    data = (doc.get("versions") or {}).get(version)
    dist = data.get("dist") if isinstance(data, dict) else None
    size = dist.get("unpackedSize") if isinstance(dist, dict) else None
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        return None
    return size


def gzip_unpacked(data: bytes) -> int | None:
    """What a gzip stream says it unpacks to: the ISIZE field of its last member (RFC 1952).
    npm's tarballs are one member; for anything else the archive limit set from this number
    makes a larger output a critical finding rather than a scan beyond its reservation."""
    if len(data) < 18 or data[:2] != b"\x1f\x8b":
        return None
    return int.from_bytes(data[-4:], "little")


def claimed_unpacked(doc: dict[str, Any], version: str | None,
                     measure: Callable[[str], int | None] | None = None) -> int:
    """What ``version`` may unpack to, with the slack it may use: ``dist.unpackedSize`` when the
    packument gives it, else what ``measure`` reads off the tarball itself (its gzip size
    field), else DEFAULT_UNPACKED."""
    if version is None:
        return 0
    size = declared_unpacked(doc, version)
    if size is None and measure is not None:
        size = measure(version)
    if size is None:
        return DEFAULT_UNPACKED
    return int(size * UNPACKED_SLACK) + 1024 * 1024


def scan_cost(doc: dict[str, Any], version: str, base: int = SCAN_RESERVE,
              measure: Callable[[str], int | None] | None = None) -> tuple[int, Limits]:
    """The memory a scan of ``version`` (and its baseline) reserves, and the archive limits
    that keep it within that: each archive may unpack to no more than the larger of the two
    claims, so a packument that understates a size gets a critical archive finding (blocked),
    never a scan larger than its reservation."""
    from chainwatch.archive.limits import Limits

    target = claimed_unpacked(doc, version, measure)
    baseline = claimed_unpacked(doc, baseline_version(doc, version), measure)
    each = max(target, baseline)
    limits = Limits(max_total_bytes=min(each, Limits().max_total_bytes))
    archives = 2 if baseline else 1
    return base + UNPACKED_FACTOR * archives * limits.max_total_bytes, limits


class Scans(Protocol):
    """What the gate asks of a scanner: ``scan.Scanner``, or one built on its first scan."""

    client: RegistryClient | None
    sandbox: bool

    def scan(self, spec: str, against: str | None = None,
             packument: dict[str, Any] | None = None, limits: Limits | None = None) -> Verdict:
        ...


class VerdictMemory(Protocol):
    """What the gate reads and writes of verdict memory: ``verdicts.VerdictStore``, or one
    opened on its first write."""

    def for_package(self, name: str) -> list[StoredVerdict]:
        ...

    def for_packages(self, names: Iterable[str],
                     batch: int = 500) -> dict[str, list[StoredVerdict]]:
        ...

    def put(self, verdict: Verdict) -> StoredVerdict:
        ...


class ScanFailed(ChainwatchError):
    """A release could not be scanned; the gate decides by ``[scan] on_error``."""


class ScanGate:
    def __init__(self, scanner: Scans, store: VerdictMemory | None, window: timedelta,
                 workers: int = SCAN_WORKERS, queue: int = SCAN_QUEUE,
                 timeout: float = SCAN_TIMEOUT, failure_seconds: float = FAILURE_SECONDS,
                 budget: MemoryBudget | None = None, scan_reserve: int = SCAN_RESERVE,
                 url_guard: Callable[[str], str | None] | None = None) -> None:
        """``url_guard(url)`` says why a tarball URL must not be fetched (the proxy's egress
        rules), checked for the release and its baseline before a scan fetches either."""
        self.scanner = scanner
        self.store = store
        self.window = window
        self.timeout = timeout
        self.failure_seconds = failure_seconds
        #: shared with the proxy when there is one (set by the proxy)
        self.budget = budget
        self.scan_reserve = scan_reserve
        self.url_guard = url_guard
        self._snapshots: dict[str, tuple[float, dict[str, StoredVerdict]]] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="chainwatch-scan")
        self._capacity = workers + queue
        self._running: dict[str, Future[StoredVerdict]] = {}
        self._failures: dict[str, tuple[float, str]] = {}
        self.scans = 0
        self.failed = 0

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _snapshot(self, name: str) -> dict[str, StoredVerdict]:
        now = time.monotonic()
        with self._lock:
            held = self._snapshots.get(name)
        if held is not None and now - held[0] < SNAPSHOT_SECONDS:
            return held[1]
        # stored under the key of the bytes they judged: a local package's verdict never
        # answers for the registry release it claims to be
        found = ({v.key: v for v in self.store.for_package(name)}
                 if self.store is not None else {})
        with self._lock:
            if held is not None:  # keep what this process scanned even without a database
                found = {**held[1], **found}
            self._snapshots[name] = (now, found)
        return found

    def preload(self, names: Iterable[str], seconds: float = SNAPSHOT_SECONDS) -> None:
        """Read the stored verdicts of many packages in a few queries (a lockfile's worth),
        kept for ``seconds`` (a ``check`` run), so that judging each package does not ask the
        database once more. What this process scans meanwhile is added to the snapshot."""
        if self.store is None:
            return
        found = self.store.for_packages(names)
        now = time.monotonic() + max(0.0, seconds - SNAPSHOT_SECONDS)
        with self._lock:
            for name, stored in found.items():
                held = self._snapshots.get(name)
                self._snapshots[name] = (now, {**(held[1] if held else {}),
                                               **{v.key: v for v in stored}})

    def cached(self, name: str, version: str, integrity: str | None) -> StoredVerdict | None:
        """The stored verdict of these bytes. When this gate runs releases in the sandbox
        (``[scan] sandbox = true``), a *benign* verdict made without it does not count: the
        release is scanned again (within the window) so that its dynamic evidence is weighed
        too. A flagged one still counts as it is: dropping it could only loosen the gate."""
        return self._trusted(self._snapshot(name).get(verdict_key(name, version, integrity)))

    def _trusted(self, hit: StoredVerdict | None) -> StoredVerdict | None:
        if (hit is not None and self.scanner.sandbox and hit.level is Level.BENIGN
                and "dynamic" not in hit.document):
            return None
        if hit is not None and hit.baseline_chosen and hit.level is Level.BENIGN:
            return None  # judged against a baseline someone chose (scan --against): not ours
        return hit

    def in_window(self, published: datetime | None, now: datetime) -> bool:
        return published is None or now - published <= self.window

    def recent_failure(self, key: str) -> str | None:
        with self._lock:
            failed = self._failures.get(key)
            if failed is not None and time.monotonic() - failed[0] >= self.failure_seconds:
                del self._failures[key]
                failed = None
        return failed[1] if failed else None

    def _fail(self, key: str, reason: str, label: str) -> ScanFailed:
        with self._lock:
            self._failures[key] = (time.monotonic(), reason)
            if len(self._failures) > 10_000:  # a flood of failures cannot grow it forever
                self._failures.pop(next(iter(self._failures)))
            self.failed += 1
        log.warning("scan of %s failed: %s", label, reason)
        return ScanFailed(reason)

    def verdict(self, name: str, version: str, doc: dict[str, Any],
                now: datetime) -> StoredVerdict | None:
        """The stored verdict, or a fresh scan when the release is within the window.

        Raises ``ScanFailed`` when the release could not be scanned (now or recently)."""
        release = release_from_packument(doc, version)
        key = verdict_key(name, version, release.integrity)
        stored = self._snapshot(name).get(key)
        hit = self._usable(self._trusted(stored), doc, version)
        if hit is not None:
            return hit
        # nothing stored and out of the window: not scanned; a stored verdict the gate may not
        # use (exploratory, or static where the sandbox is asked for) is replaced, whatever age
        if stored is None and not self.in_window(parse_time(release.published), now):
            return None
        if (failed := self.recent_failure(key)) is not None:
            raise ScanFailed(f"{failed} (failed less than {self.failure_seconds:g} s ago)")
        if (why := self._refused_url(doc, version)) is not None:
            raise self._fail(key, why, f"{name}@{version}")
        with self._lock:
            future = self._running.get(key)
            if future is None:
                if len(self._running) >= self._capacity:
                    raise ScanFailed(f"the scan queue is full ({self._capacity} scans)")
                future = self._pool.submit(self._scan, key, name, version, doc)
                self._running[key] = future
        try:
            return future.result(timeout=self.timeout)
        except FutureTimeout:
            raise self._fail(key, f"the scan took longer than {self.timeout:g} s",
                             f"{name}@{version}") from None

    @staticmethod
    def _usable(hit: StoredVerdict | None, doc: dict[str, Any],
                version: str) -> StoredVerdict | None:
        """A stored verdict the gate may use: not a flagged one made without a baseline (an
        exploratory ``scan --against none``) for a release that has a previous version to
        compare with; that release is scanned against it instead, whatever its age, and the
        new verdict replaces the old. Nor one made against a baseline the user chose
        (``scan --against``): the gate judges by the registry history, and its verdict
        replaces that one."""
        if (hit is not None and hit.level is not Level.BENIGN and hit.baseline is None
                and baseline_version(doc, version) is not None):
            return None
        if hit is not None and hit.baseline_chosen:
            return None
        return hit

    def _refused_url(self, doc: dict[str, Any], version: str) -> str | None:
        """Why the scan may not fetch the release's or its baseline's tarball, if it may not."""
        if self.url_guard is None:
            return None
        for which in (version, baseline_version(doc, version)):
            if which is not None:
                url = release_from_packument(doc, which).tarball_url or ""
                if (why := self.url_guard(url)) is not None:
                    return f"cannot fetch the tarball of {which}: {why}"
        return None

    def _scan(self, key: str, name: str, version: str, doc: dict[str, Any]) -> StoredVerdict:
        """One scan in a worker thread; every failure becomes ``ScanFailed`` with its reason."""
        from chainwatch.gate.budget import BudgetExceeded

        try:
            hit = self._usable(self.cached(
                name, version, release_from_packument(doc, version).integrity), doc, version)
            if hit is not None:
                return hit
            # reserved before anything is fetched, for what the archives unpack to (not their
            # compressed size), and released when the scan is done
            cost, limits = scan_cost(doc, version, self.scan_reserve,
                                     lambda which: self._measure(doc, which))
            if self.budget is not None:
                # half the caller's patience, so that it hears why rather than a timeout
                self.budget.reserve(cost, self.timeout / 2)
            try:
                result = self.scanner.scan(f"{name}@{version}", None, doc, limits=limits)
            finally:
                if self.budget is not None:
                    self.budget.release(cost)
            with self._lock:
                self.scans += 1
                self._failures.pop(key, None)
            return self._remember(result)
        except ScanFailed:
            raise
        except BudgetExceeded as exc:
            raise self._fail(key, f"no room to scan: {exc}", f"{name}@{version}") from exc
        except ChainwatchError as exc:
            raise self._fail(key, str(exc), f"{name}@{version}") from exc
        except Exception as exc:  # any bug or hostile input: one line, never a pass
            log.debug("scan of %s raised", key, exc_info=True)
            raise self._fail(key, f"{type(exc).__name__}: {exc}"[:300], f"{name}@{version}") from exc
        finally:
            with self._lock:
                self._running.pop(key, None)

    def _measure(self, doc: dict[str, Any], version: str) -> int | None:
        """For a packument without ``dist.unpackedSize``: the tarball's own gzip size field.
        The download is cached by content, so the scan reads the same bytes from the cache;
        a download that fails here fails the scan the same way later."""
        client = self.scanner.client
        release = release_from_packument(doc, version)
        if client is None or not release.tarball_url:
            return None
        try:
            tarball = client.tarball(release.tarball_url, release.integrity, release.shasum)
        except ChainwatchError:
            return None
        return gzip_unpacked(tarball.data)

    def _remember(self, verdict: Verdict) -> StoredVerdict:
        from chainwatch.verdicts import stored_from_verdict

        stored = (self.store.put(verdict) if self.store is not None
                  else stored_from_verdict(verdict))
        name = verdict.target.name
        with self._lock:
            when, held = self._snapshots.get(name, (time.monotonic(), {}))
            self._snapshots[name] = (when, {**held, stored.key: stored})
        return stored
