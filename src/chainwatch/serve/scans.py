"""Scans submitted over the API, run by a bounded pool of worker threads.

A submission is a registry target (``name@version``, optionally ``against`` another) or a
tarball's bytes, never a path on the server's disk: targets are checked before they are
queued, and the scanner the pool uses refuses any spec that names a file or folder. The queue
is bounded (a full queue is refused at once, the API answers 503) and so is the memory of past
jobs (the oldest finished ones are forgotten first). A finished scan is stored in the verdict
memory like any other; its job keeps the ``chainwatch.scan/1`` document.
"""

from __future__ import annotations

import logging
import queue
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from chainwatch.archive.limits import Limits
    from chainwatch.intel.base import KnownBadSource
    from chainwatch.registry.client import RegistryClient
    from chainwatch.scan import Loaded, Scanner

log = logging.getLogger("chainwatch.serve.scans")

#: the largest tarball the API accepts (compressed); npm's own limit is far above real packages
MAX_UPLOAD = 32 * 1024 * 1024
#: scans waiting for a worker; one more is refused
QUEUE_SIZE = 32
#: jobs remembered (finished ones are forgotten oldest first beyond this)
MAX_JOBS = 2000
#: uploaded bytes the queue may hold at once (waiting or being scanned); one more is refused
MAX_HELD_BYTES = 128 * 1024 * 1024
#: a target longer than this is refused before it is parsed
MAX_TARGET = 300

#: the prefix of the spec under which an uploaded tarball is handed to the scanner
UPLOAD = "upload:"

# what a registry spec may look like: name@version|range|tag; no path, URL, git or alias
_SPEC_CHARS = re.compile(r"[A-Za-z0-9@/._~^<>=| *+-]+")
_NOT_REGISTRY = re.compile(r"(^|@)(npm|file|git|git\+\w+|https?|link|workspace|github):|"
                           r"^[./~]|\\|\.\.|://|#")


class QueueFull(Exception):
    """Every worker is busy and the queue is full: try again later."""


@dataclass(frozen=True)
class ScanRequest:
    """One submission: a registry target, or an uploaded tarball's bytes."""

    target: str | None = None
    against: str | None = None
    tarball: bytes | None = None
    filename: str = "upload.tgz"


@dataclass
class Job:
    id: str
    request: ScanRequest
    status: str = "queued"  # queued | running | done | failed
    submitted: float = field(default_factory=time.time)
    finished: float | None = None
    document: dict[str, Any] | None = None
    key: str | None = None
    error: str | None = None
    #: why the verdict was not kept in verdict memory (``VerdictStore.keep``), when it was not
    note: str | None = None

    def public(self) -> dict[str, Any]:
        """What ``GET /api/v1/scans/{id}`` answers: the status, then the document."""
        out: dict[str, Any] = {"id": self.id, "status": self.status,
                               "target": self.request.target or UPLOAD + self.request.filename,
                               "against": self.request.against}
        if self.key is not None:
            out["verdict_key"] = self.key
        if self.error is not None:
            out["error"] = self.error
        if self.note is not None:
            out["note"] = self.note
        if self.document is not None:
            out["document"] = self.document
        return out


def target_problem(spec: str) -> str | None:
    """Why ``spec`` is not a registry ``name@version`` (or range or tag) the API may scan."""
    from chainwatch.names import name_problem, split_spec

    if not spec or len(spec) > MAX_TARGET:
        return f"a target is 1 to {MAX_TARGET} characters"
    if not _SPEC_CHARS.fullmatch(spec) or _NOT_REGISTRY.search(spec):
        return ("only registry targets (name@version) can be scanned over the API: not paths, "
                "URLs, git or alias specs")
    name, wanted = split_spec(spec)
    if (problem := name_problem(name)) is not None:
        return f"invalid package name: {problem}"
    if not wanted:
        return "name a version (name@version)"
    from chainwatch.versions import spec_kind

    if spec_kind(wanted) is None:  # a path, a home folder, a space: one text, no file oracle
        return "the part after @ must be a version, a range or a tag (name@version)"
    return None


#: what runs one scan: the request in, (verdict memory key, chainwatch.scan/1 document) out,
#: optionally with a note: why verdict memory did not keep the verdict
ScanFn = Callable[[ScanRequest], tuple[str, dict[str, Any]]
                  | tuple[str, dict[str, Any], str | None]]


class ScanPool:
    """``workers`` threads take jobs from a queue of at most ``queue_size``."""

    def __init__(self, scan: ScanFn, *, workers: int = 2, queue_size: int = QUEUE_SIZE,
                 max_jobs: int = MAX_JOBS, max_held_bytes: int = MAX_HELD_BYTES) -> None:
        self._scan = scan
        self._queue: queue.Queue[Job | None] = queue.Queue(maxsize=queue_size)
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self._max_jobs = max_jobs
        self._max_held = max_held_bytes
        self._held = 0  # bytes of uploads queued or being scanned
        self._threads = [threading.Thread(target=self._work, name=f"chainwatch-scan-{i}",
                                          daemon=True) for i in range(max(1, workers))]
        for t in self._threads:
            t.start()

    def submit(self, request: ScanRequest) -> Job:
        """Queue a scan; QueueFull when the queue is full. Targets are checked by the caller."""
        job = Job(secrets.token_urlsafe(16), request)
        size = len(request.tarball or b"")
        with self._lock:
            if size and self._held + size > self._max_held:
                raise QueueFull("the scan queue holds as many uploaded bytes as it may; "
                                "try again later")
            try:
                self._queue.put_nowait(job)
            except queue.Full:
                raise QueueFull("the scan queue is full; try again later") from None
            self._held += size
            self._jobs[job.id] = job
            self._forget()
        return job

    def _forget(self) -> None:
        """Drop the oldest finished jobs beyond max_jobs (queued or running ones stay)."""
        excess = len(self._jobs) - self._max_jobs
        if excess <= 0:
            return
        for ident in [i for i, j in self._jobs.items() if j.status in ("done", "failed")][:excess]:
            del self._jobs[ident]

    def get(self, ident: str) -> Job | None:
        with self._lock:
            return self._jobs.get(ident)

    def waiting(self) -> int:
        return self._queue.qsize()

    def close(self, timeout: float = 5.0) -> None:
        """Stop the workers after their current scan (queued jobs are dropped)."""
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        for _ in self._threads:
            try:
                self._queue.put_nowait(None)
            except queue.Full:
                break
        for t in self._threads:
            t.join(timeout)

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            job.status = "running"
            try:
                key, document, *note = self._scan(job.request)
                job.key, job.document = key, document
                job.note = note[0] if note else None
                job.status = "done"
            except Exception as exc:  # one bad scan is one failed job, never a dead worker
                from chainwatch.errors import ChainwatchError, one_line

                if not isinstance(exc, ChainwatchError):
                    log.exception("scan %s failed", job.id)
                job.error = one_line(exc)[:500] if isinstance(exc, ChainwatchError) else (
                    "the scan failed (see the server's log)")
                job.status = "failed"
            with self._lock:
                self._held -= len(job.request.tarball or b"")
            job.request = ScanRequest(job.request.target, job.request.against, None,
                                      job.request.filename)  # the bytes are not kept
            job.finished = time.time()


class Uploads:
    """Uploaded tarballs waiting for their scan, by the spec they are handed over as."""

    def __init__(self) -> None:
        self._held: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def hold(self, data: bytes) -> str:
        spec = UPLOAD + secrets.token_urlsafe(12)
        with self._lock:
            self._held[spec] = data
        return spec

    def get(self, spec: str) -> bytes | None:
        with self._lock:
            return self._held.get(spec)

    def drop(self, spec: str) -> None:
        with self._lock:
            self._held.pop(spec, None)


def _remote_scanner_class() -> type[Scanner]:
    from chainwatch.archive import read_tarball
    from chainwatch.errors import UsageError
    from chainwatch.scan import Scanner, sri_sha512

    class RemoteScanner(Scanner):
        """A scanner for the API: registry targets and uploaded bytes only, never a path."""

        uploads = Uploads()

        def load(self, spec: str, packument: dict[str, Any] | None = None,
                 limits: Limits | None = None) -> Loaded:
            data = self.uploads.get(spec)
            if data is not None:
                files = read_tarball(data, source="upload", limits=limits)
                return self._with_metadata(files, packument, "tarball", sri_sha512(data), None)
            problem = target_problem(spec)
            if problem is None and Path(spec).exists():
                # the base scanner would read it from the disk: never over the API
                problem = "it names a file on the server"
            if problem is not None:
                raise UsageError(f"{spec[:MAX_TARGET]}: {problem}")
            return super().load(spec, packument, limits)

    return RemoteScanner


def registry_scan(engine: Engine, client: RegistryClient,
                  known_bad: KnownBadSource | None = None
                  ) -> tuple[Callable[[ScanRequest], tuple[str, dict[str, Any], str | None]],
                             Callable[[], None]]:
    """A scan function for the pool that stores each verdict in the verdict memory, and the
    function that closes its scanner."""
    from dataclasses import replace

    from chainwatch.archive.limits import Limits
    from chainwatch.output.jsonout import verdict_dict
    from chainwatch.verdicts import VerdictStore

    uploads = Uploads()
    remote = _remote_scanner_class()
    remote.uploads = uploads  # type: ignore[attr-defined]
    scanner = remote(client, known_bad=known_bad, workers=1)
    store = VerdictStore(engine=engine)
    limits = Limits(max_total_bytes=256 * 1024 * 1024)

    def scan(request: ScanRequest) -> tuple[str, dict[str, Any], str | None]:
        if request.tarball is not None:
            spec = uploads.hold(request.tarball)
            try:
                verdict = scanner.scan(spec, request.against, limits=limits)
            finally:
                uploads.drop(spec)
        else:
            assert request.target is not None
            verdict = scanner.scan(request.target, request.against, limits=limits)
        if request.against is not None and not verdict.baseline_chosen:
            verdict = replace(verdict, baseline_chosen=True)
        # against a chosen baseline: stored only where nothing is (VerdictStore.keep)
        kept = store.keep(verdict)
        return kept.stored.key, verdict_dict(verdict), kept.note()

    return scan, scanner.close
