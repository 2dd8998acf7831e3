"""The watch pipeline: poll → new version queued → scan against the previous one → verdict
stored → alert written with its deliveries → delivered with retries.

Three loops share the database and nothing else: polling (a small thread pool under a request
budget), scanning (one at a time; big packages use the scanner's process pool) and delivering.
``run_once`` does one pass of each, for cron jobs and tests.

The three loops are roles (``ROLES``): one process may run any of them, and several processes
may share one database, each claiming what it works on with a lease (``state.py``): a scan's
lease is renewed while it runs (``_holding``), for ``max_hold`` seconds at most.
"""

from __future__ import annotations

import functools
import itertools
import logging
import os
import random
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from chainwatch.analysis.metadata import parse_time
from chainwatch.errors import ChainwatchError
from chainwatch.model import Level, Verdict
from chainwatch.output.escape import plain
from chainwatch.packument import release_from_packument
from chainwatch.registry.client import RegistryClient
from chainwatch.scan import Scanner
from chainwatch.verdicts import VerdictStore
from chainwatch.versions import parse as parse_version
from chainwatch.versions import sort_versions
from chainwatch.watch.metrics import Metrics
from chainwatch.watch.sinks import DeliveryError, Sink
from chainwatch.watch.state import Delivery, Due, LeaseLost, Queued, WatchState

log = logging.getLogger("chainwatch.watch")

#: what a watch process does: poll the registry, scan queued versions, deliver alerts
ROLES: tuple[str, ...] = ("poller", "scanner", "deliverer")
#: seconds between looks for claims left by dead processes of this host
REAP_EVERY = 10.0


def host_id() -> str:
    """This host in claim tokens: its name and the kernel's boot id (so a pid seen in a
    token is a pid of this very boot; containers on one kernel share the boot id, so give
    them distinct host names)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()[:8]
    except OSError:
        boot = "-"
    return f"{socket.gethostname()[:64].replace(':', '_')}/{boot}"


def pid_alive(pid: int) -> bool:
    """Whether a process of this host runs under ``pid`` (a zombie does not: it is dead
    and only waits to be reaped). Unsure (no permission) counts as alive."""
    if pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def describe_error(exc: BaseException) -> str:
    """One printable line for an exception (its type and the start of its message); the
    message can carry text from a hostile release, so control characters are removed."""
    text = plain(str(exc)).replace("\n", " ")[:300]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@dataclass(frozen=True)
class WatchConfig:
    #: seconds between polls of an ordinary package, and of a hot one
    interval: float = 60.0
    hot_interval: float = 15.0
    #: packument requests per minute, all packages together
    budget: int = 600
    poll_workers: int = 8
    alert_on: Level = Level.SUSPICIOUS
    #: a new package on the list: versions published this recently are scanned, not baselined
    recent_on_start: float = 24 * 3600
    #: one account publishing this many packages within the window is a burst
    burst_min: int = 3
    burst_window: float = 3600.0
    #: a release whose scan fails (any exception) is retried after ``scan_backoff`` seconds,
    #: doubling up to ``scan_backoff_max``; after ``max_scan_attempts`` a ``scan-failed``
    #: alert goes out and the release is left alone (the rest of the queue never waits for it)
    max_scan_attempts: int = 3
    scan_backoff: float = 60.0
    scan_backoff_max: float = 3600.0
    max_delivery_attempts: int = 10
    #: a package with a release this recent is polled at the hot interval
    active_days: float = 7.0
    #: seconds a claim (a poll, a scan, a delivery) holds its row before another process may
    #: take it; a scan's and a delivery's lease is renewed every lease/3 while it runs, but
    #: for ``max_hold`` seconds at most (then it lapses: a hung scan cannot hold a version)
    lease: float = 60.0
    max_hold: float = 1800.0

    def effective_interval(self, packages: int) -> float:
        """Never ask more often than the budget allows, however long the list."""
        return max(self.interval, packages * 60.0 / max(self.budget, 1))


class Budget:
    """A token bucket: at most ``per_minute`` requests, spread rather than bunched."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, per_minute / 6.0)
        self.tokens = self.capacity
        self.clock = clock
        self.stamp = clock()
        self.paused_until = 0.0
        self.lock = threading.Lock()

    def take(self, wanted: int) -> int:
        with self.lock:
            now = self.clock()
            if now < self.paused_until:
                return 0
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            granted = min(wanted, int(self.tokens))
            self.tokens -= granted
            return granted

    def pause(self, seconds: float) -> None:
        with self.lock:
            self.paused_until = max(self.paused_until, self.clock() + seconds)


class ScanExecutor(Protocol):
    """Where the scan stage runs when not in this process (``watch --dask``): ``scan`` returns
    the verdict of ``spec`` (judged with ``packument``) or raises; at most ``in_flight`` scans
    are handed to it at once. Claiming, storing and alerting stay in the watcher."""

    in_flight: int

    def scan(self, spec: str, packument: dict[str, Any] | None) -> Verdict: ...


class Watcher:
    def __init__(self, state: WatchState, client: RegistryClient, scanner: Scanner,
                 verdicts: VerdictStore, sinks: Sequence[Sink], config: WatchConfig,
                 metrics: Metrics | None = None, fleet: Any = None,
                 clock: Callable[[], float] = time.time,
                 scan_executor: ScanExecutor | None = None) -> None:
        self.state = state
        self.client = client
        self.scanner = scanner
        self.verdicts = verdicts
        self.sinks = {s.name: s for s in sinks}
        self.config = config
        self.metrics = metrics or Metrics()
        self.fleet = fleet
        self.clock = clock
        self.budget = Budget(config.budget)
        self.interval = config.interval
        self._docs: dict[str, dict[str, Any]] = {}
        #: names this process's claims (host:pid:random), one token per claim
        self.host = host_id()
        self.worker = f"{self.host}:{os.getpid()}:{secrets.token_hex(4)}"
        self._claims = itertools.count(1)
        self._reaped_at = -REAP_EVERY
        #: the roles this process runs (set by run and run_once)
        self.roles: tuple[str, ...] = ROLES
        self.scan_executor = scan_executor
        self._scanning: dict[tuple[str, str], Future[Verdict | None]] = {}
        self._scan_pool: ThreadPoolExecutor | None = None
        self._scanning_lock = threading.Lock()
        #: this poll pass's baselined versions and packages (for its one summary log line)
        self._baselined = [0, 0]
        self._tally_lock = threading.Lock()

    def _token(self) -> str:
        """A fresh claim token; first (every REAP_EVERY seconds) free the claims of this
        host's processes that died holding them."""
        if time.monotonic() - self._reaped_at >= REAP_EVERY:
            self._reaped_at = time.monotonic()
            try:
                if freed := self.state.release_dead(self.host, pid_alive, self.clock()):
                    log.info("freed %d claims of watch processes that died on this host", freed)
            except Exception as exc:  # their leases run out anyway
                log.warning("freeing the claims of dead processes failed: %s",
                            describe_error(exc))
        return f"{self.worker}#{next(self._claims)}"

    @contextmanager
    def _holding(self, what: str, renew: Callable[[float], bool]) -> Iterator[None]:
        """Renew a claim's lease every lease/3 seconds while the body runs, for ``max_hold``
        seconds at most; a renewal that finds the claim gone stops (the finish will say)."""
        stop = threading.Event()
        started = time.monotonic()

        def beat() -> None:
            while not stop.wait(max(self.config.lease / 3, 0.05)):
                if time.monotonic() - started >= self.config.max_hold:
                    log.warning("%s has run %g s: its lease is no longer renewed", what,
                                self.config.max_hold)
                    return
                try:
                    if not renew(self.clock() + self.config.lease):
                        if not stop.is_set():  # else it just finished and let go
                            log.warning("the lease on %s was lost", what)
                        return
                except Exception as exc:  # the database hiccuped: try again next beat
                    log.warning("renewing the lease on %s failed: %s", what,
                                describe_error(exc))

        thread = threading.Thread(target=beat, name="watch-lease", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()

    # -- polling -------------------------------------------------------------------------------
    def watch(self, names: list[str], hot: set[str]) -> int:
        added = self.state.add_packages(names, hot)
        self.interval = self.config.effective_interval(self.state.status()["packages"])
        return added

    def poll_once(self) -> int:
        """Poll the packages that are due, as many as the budget allows; how many were."""
        due = self.state.due(self.clock(), self.config.budget)
        granted = self.budget.take(len(due))
        if not granted:
            return 0
        # several pollers may run: poll only the packages this one claims
        claimed = self.state.claim_due(self._token(), self.clock(), granted, self.config.lease)
        with self._tally_lock:
            self._baselined = [0, 0]
        with ThreadPoolExecutor(self.config.poll_workers) as pool:
            found = [q for q in pool.map(self._poll_guarded, claimed) if q]
        with self._tally_lock:
            versions, packages = self._baselined
        if versions:  # a long first pass over a big list shows it is moving
            log.info("baselined %d versions of %d packages", versions, packages)
        if found:
            log.info("queued %d new versions of %d packages",
                     sum(len(q) for q in found), len(found))
        return len(claimed)

    def _poll_guarded(self, due: Due) -> list[str]:
        """A packument that breaks the poll (any exception) backs its package off like a
        registry error; the other packages are polled as usual."""
        try:
            return self.poll(due.name, due.hot, due.baselined, due.claim)
        except LeaseLost as exc:  # polled too slowly: another poller holds it and records it
            log.warning("poll of %s dropped: %s", plain(due.name), exc)
            return []
        except Exception as exc:  # one hostile packument must not stop the polling
            self._poll_failed(due.name, describe_error(exc), due.claim)
            return []

    def _poll_failed(self, name: str, error: str, claim: str | None = None) -> None:
        failures = 1 + int(self.state.status_of(name).get("failures", 0))
        wait = min(self.interval * 2 ** min(failures, 6), 3600.0)
        self.state.record_poll_failure(name, error, self.clock() + wait, claim)
        self.metrics.polls.labels("error").inc()
        log.warning("poll %s failed (%s); next try in %.0f s", plain(name), error, wait)

    def _next_due(self, hot: bool) -> float:
        base = self.config.hot_interval if hot else self.interval
        return self.clock() + base * random.uniform(0.9, 1.1)

    def poll(self, name: str, hot: bool, baselined: bool,
             claim: str | None = None) -> list[str]:
        """Ask the registry for one package; queue its new versions. Returns them. With
        ``claim``, they are recorded only while that claim holds the package (LeaseLost)."""
        started = time.perf_counter()
        try:
            doc = self.client.packument(name)
        except ChainwatchError as exc:
            self._poll_failed(name, str(exc), claim)
            return []
        self.metrics.polls.labels("ok").inc()
        self.metrics.poll_seconds.observe(time.perf_counter() - started)
        listed = doc.get("versions") if isinstance(doc.get("versions"), dict) else {}
        times = doc.get("time") if isinstance(doc.get("time"), dict) else {}
        assert isinstance(listed, dict) and isinstance(times, dict)
        known = self.state.known_versions(name)
        now = self.clock()
        new: list[dict[str, Any]] = []
        recent_seen = False
        queued: list[str] = []
        for version in listed:
            published = times.get(version) if isinstance(times.get(version), str) else None
            when = parse_time(published)
            age = now - when.timestamp() if when else None
            if age is not None and age < self.config.active_days * 86400:
                recent_seen = True
            if version in known:
                continue
            try:
                publisher = release_from_packument(doc, version).publisher
            except ChainwatchError:
                publisher = None
            row = {"version": version, "published": published, "publisher": publisher}
            fresh = not baselined and age is not None and age < self.config.recent_on_start
            row["status"] = "queued" if baselined or fresh else "baseline"
            if row["status"] == "queued":
                queued.append(version)
            new.append(row)
        if queued and "scanner" in self.roles:  # kept for this process's scan (no second
            self._docs[name] = doc                 # request), only while something waits
        # popular packages are always hot; others while they had a release in the last week
        self.state.record_poll(name, new, baseline=not baselined, now=now,
                               next_due=self._next_due(hot or recent_seen), claim=claim)
        if len(new) > len(queued):
            with self._tally_lock:
                self._baselined[0] += len(new) - len(queued)
                self._baselined[1] += 1
        for version in queued:
            self.metrics.versions_seen.inc()
            log.info("new release %s@%s queued for scanning", name, version)
        return queued

    # -- scanning ------------------------------------------------------------------------------
    def scan_once(self, limit: int = 10) -> int:
        """Scan up to ``limit`` queued versions, each under its own claim: one at a time here
        (so several scanners share the queue as they free up), or handed to the executor."""
        scanned = 0
        if self.scan_executor is not None:  # handed over, scanned (claimed) in our threads
            scanned = len(self._hand_over())
        else:  # claimed and scanned one at a time (so several scanners share the queue)
            while scanned < limit and (item := self.state.claim_next(
                    self._token(), self.clock(), self.config.lease)) is not None:
                self.scan(item)
                scanned += 1
        waiting = self.state.waiting()
        self.metrics.queue_depth.set(sum(waiting.values()))
        retrying, failed = self.state.scan_failure_counts()
        self.metrics.scans_retrying.set(retrying)
        self.metrics.scans_failed.set(failed)
        for name in [n for n in list(self._docs) if n not in waiting]:
            self._docs.pop(name, None)  # packuments are kept only while a version waits
        return scanned

    def _hand_over(self) -> list[Queued]:
        """``scan_executor``: keep up to ``in_flight`` queued releases scanning, each in a
        thread of ours that waits for its verdict and then stores and alerts as ``scan`` does;
        returns the releases handed over now. With every slot taken it waits (a second at
        most) for one to free, so a finished scan is replaced at once."""
        assert self.scan_executor is not None
        slots = self.scan_executor.in_flight
        if self._scan_pool is None:
            self._scan_pool = ThreadPoolExecutor(slots, thread_name_prefix="watch-scan")
        if len(self._scanning) >= slots:
            wait(self._in_flight(), timeout=1.0, return_when=FIRST_COMPLETED)
        with self._scanning_lock:
            busy = set(self._scanning)
        free = slots - len(busy)
        if free <= 0:
            return []
        # claimed here (the claim skips versions other scanners hold), one per free slot: each
        # starts at once in its own thread, which renews the lease while the cluster scans
        items: list[Queued] = []
        while len(items) < free and (item := self.state.claim_next(
                self._token(), self.clock(), self.config.lease)) is not None:
            items.append(item)
        for item in items:
            key = (item.name, item.version)
            with self._scanning_lock:
                future = self._scan_pool.submit(self.scan, item)
                self._scanning[key] = future
            future.add_done_callback(functools.partial(self._scanned, key))
        return items

    def _in_flight(self) -> list[Future[Verdict | None]]:
        with self._scanning_lock:
            return list(self._scanning.values())

    def _scanned(self, key: tuple[str, str], _: object) -> None:
        with self._scanning_lock:
            self._scanning.pop(key, None)

    def scan(self, item: Queued) -> Verdict | None:
        """Scan one queued release. Any exception (a registry error, or a hostile release
        that breaks the analysis: RecursionError, MemoryError, a bug) is recorded against
        this release with its attempt count and backoff; it never reaches the caller, so the
        rest of the queue is scanned in the same pass. The attempt is counted (and the next
        one scheduled) before the scan begins, so a release that kills the process (a crash
        in a native parser, the OOM killer) is not retried first after every restart.

        The item is held by a claim (``scan_once`` claims it; an unclaimed one is claimed
        here), renewed while the scan runs; if the claim lapsed and another scanner took the
        version, this scan's result is dropped (LeaseLost): only one scan finishes a version."""
        spec = f"{item.name}@{item.version}"
        if item.claim is None:
            held = self.state.claim_version(item, self._token(), self.clock(), self.config.lease)
            if held is None:  # scanned or claimed by another process meanwhile
                return None
            item = held
        try:
            if item.attempts >= self.config.max_scan_attempts:  # every earlier try died
                self._scan_failed(item, f"Interrupted: {item.attempts} scans of {plain(spec)} "
                                        "began and never finished (the watcher was killed or "
                                        "crashed while scanning it)")
                return None
            now = self.clock()
            claimed = self.state.claim(item, now + self._scan_backoff(item.attempts + 1))
            with self._holding(f"the scan of {plain(spec)}",
                               lambda until: self.state.renew_version(claimed, until)):
                try:
                    verdict, created = self._scan(claimed)
                except LeaseLost:
                    raise
                except Exception as exc:  # one release must never stop the queue
                    self._scan_failed(claimed, describe_error(exc))
                    return None
        except LeaseLost as exc:
            log.warning("scan of %s dropped: %s (another scanner holds it now)", plain(spec),
                        exc)
            return None
        if created:
            self.metrics.alerts.labels("release").inc()
            try:
                self._burst(claimed, self.clock())
            except Exception as exc:  # the release alert is committed; the burst is extra
                log.error("burst check after %s failed: %s", plain(spec), describe_error(exc))
        return verdict

    def _scan(self, item: Queued) -> tuple[Verdict, bool]:
        spec = f"{item.name}@{item.version}"
        doc = self._docs.get(item.name)
        if doc is None or item.version not in (doc.get("versions") or {}):
            doc = self.client.packument(item.name)
        verdict = (self.scan_executor.scan(spec, doc) if self.scan_executor is not None
                   else self.scanner.scan(spec, None, doc))
        self.verdicts.put(verdict)
        now = self.clock()
        published = parse_time(item.published)
        if published is not None:
            self.metrics.latency.observe(max(0.0, now - published.timestamp()))
        alert = None
        if verdict.level.rank >= self.config.alert_on.rank:
            alert = (f"release:{spec}", "release", self.release_alert(verdict, item, now, doc))
        created = self.state.finish(item, verdict.level.value, alert, list(self.sinks), now)
        log.info("%s: %s (score %d)", plain(spec), verdict.level.value, verdict.score)
        return verdict, created

    def _scan_backoff(self, attempts: int) -> float:
        return float(min(self.config.scan_backoff * 2.0 ** max(attempts - 1, 0),
                         self.config.scan_backoff_max))

    def _scan_failed(self, item: Queued, error: str) -> None:
        """Record the failure of the attempt ``item.attempts`` (already counted)."""
        spec = f"{item.name}@{item.version}"
        attempts = item.attempts
        now = self.clock()
        give_up = attempts >= self.config.max_scan_attempts
        retry = None if give_up else now + self._scan_backoff(attempts)
        alert = None
        if give_up:
            alert = (f"scan-failed:{spec}", "scan-failed",
                     self.scan_failed_alert(item, error, attempts, now))
        created = self.state.scan_failed(item, error, retry, alert, list(self.sinks), now)
        self.metrics.scan_failures.labels("gave_up" if give_up else "retry").inc()
        if created:
            self.metrics.alerts.labels("scan-failed").inc()
        if give_up:
            log.error("scan of %s failed (%s), attempt %d of %d; giving up and alerting",
                      plain(spec), error, attempts, self.config.max_scan_attempts)
        else:
            log.warning("scan of %s failed (%s), attempt %d of %d; next try in %.0f s",
                        plain(spec), error, attempts, self.config.max_scan_attempts,
                        (retry or now) - now)

    def scan_failed_alert(self, item: Queued, error: str, attempts: int,
                          now: float) -> dict[str, Any]:
        spec = f"{item.name}@{item.version}"
        return {
            "schema": "chainwatch.alert/1", "id": f"scan-failed:{spec}",
            "kind": "scan-failed", "package": item.name, "version": item.version,
            "verdict": "unknown", "error": error, "attempts": attempts,
            "publisher": item.publisher, "published": item.published,
            "detected_at": datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds"),
            "environments": self._environments(item.name, item.version),
            "action": (f"chainwatch could not analyse {spec}; treat it as unreviewed: keep "
                       f"{item.name} pinned to a version you know and review this release "
                       f"by hand before allowing it"),
        }

    def release_alert(self, verdict: Verdict, item: Queued, now: float,
                      packument: dict[str, Any] | None = None) -> dict[str, Any]:
        from chainwatch.output.jsonout import verdict_dict

        doc = verdict_dict(verdict)
        published = parse_time(item.published)
        evidence = [{k: f.get(k) for k in ("rule", "severity", "technique", "message", "file",
                                           "line", "snippet")}
                    for f in [*doc["findings"], *doc["metadata_signals"]][:5]]
        base = verdict.baseline.version if verdict.baseline else None
        good = self._previous_good(item.name, item.version, packument or {})
        which = ("the previous version" if good == base else
                 f"the newest earlier version not flagged; {base} is flagged too")
        action = (f"pin {item.name} to {good} ({which}) and block {item.name}@{item.version}; "
                  f"`chainwatch check` and `chainwatch proxy` refuse it from now on" if good
                  else f"remove {item.name}@{item.version}; no earlier version is unflagged")
        return {
            "schema": "chainwatch.alert/1", "id": f"release:{item.name}@{item.version}",
            "kind": "release", "package": item.name, "version": item.version,
            "verdict": verdict.level.value, "score": verdict.score,
            "explanation": verdict.explanation, "baseline": base, "pin_to": good,
            "publisher": item.publisher, "published": item.published,
            "detected_at": datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds"),
            "latency_seconds": round(now - published.timestamp(), 1) if published else None,
            "integrity": verdict.integrity, "evidence": evidence,
            "environments": self._environments(item.name, item.version), "action": action,
        }

    def _previous_good(self, name: str, version: str, doc: dict[str, Any]) -> str | None:
        """The newest stable version below ``version`` that is neither known-bad nor stored
        as flagged (up to 20 are looked at)."""
        target = parse_version(version)
        if target is None:
            return None
        flagged = {v.version for v in self.verdicts.for_package(name) if v.level is not
                   Level.BENIGN}
        known_bad = self.scanner.known_bad
        for candidate in reversed(sort_versions(doc.get("versions") or {})):
            parsed = parse_version(candidate)
            if parsed is None or parsed.prerelease or parsed >= target:
                continue
            if candidate not in flagged and not known_bad.lookup(name, candidate):
                return candidate
            flagged.add(candidate)
            if len(flagged) > 20:
                break
        return None

    def _environments(self, name: str, version: str) -> list[dict[str, Any]]:
        if self.fleet is None:
            return []
        try:
            sightings = self.fleet.query(name)
        except Exception as exc:  # fleet memory is a bonus; never lose an alert over it
            log.warning("fleet memory unavailable: %s", exc)
            return []
        out: dict[str, dict[str, Any]] = {}
        for s in sightings:
            entry = out.setdefault(s.label, {"label": s.label, "source": s.source,
                                             "recorded_at": s.recorded_at, "versions": [],
                                             "holds_this_version": False})
            if s.version not in entry["versions"]:
                entry["versions"].append(s.version)
            entry["holds_this_version"] |= s.version == version
        return sorted(out.values(), key=lambda e: (not e["holds_this_version"], e["label"]))

    def _burst(self, item: Queued, now: float) -> None:
        """Several packages from one account within the window, one of them flagged: one
        incident-level alert naming them all (the Qix and Shai-Hulud pattern)."""
        if not item.publisher:
            return
        recent = [r for r in self.state.recent_releases(now - self.config.burst_window)
                  if r["publisher"] == item.publisher]
        packages = {r["name"] for r in recent}
        flagged = [r for r in recent if r["level"] in ("suspicious", "malicious")]
        if len(packages) < self.config.burst_min or not flagged:
            return
        first = min(recent, key=lambda r: (r["seen_at"], r["pk"]))
        alert_id = f"burst:{item.publisher}:{first['pk']}"
        level = "malicious" if any(r["level"] == "malicious" for r in recent) else "suspicious"
        payload: dict[str, Any] = {
            "schema": "chainwatch.alert/1", "id": alert_id,
            "kind": "burst", "publisher": item.publisher, "verdict": level,
            "window_minutes": round(self.config.burst_window / 60),
            "releases": [{"package": r["name"], "version": r["version"],
                          "published": r["published"], "verdict": r["level"] or "pending"}
                         for r in sorted(recent, key=lambda r: r["seen_at"])],
            "detected_at": datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds"),
            "action": f"treat every release by {item.publisher} in this window as compromised "
                      f"until reviewed; block the account's new versions at the gate",
        }
        if self.state.add_alert(alert_id, "burst", payload, list(self.sinks), now):
            self.metrics.alerts.labels("burst").inc()
            log.warning("release burst by %s: %d packages", item.publisher, len(packages))

    # -- delivering ----------------------------------------------------------------------------
    def deliver_once(self, limit: int = 50) -> int:
        """Claim and send up to ``limit`` owed deliveries, one claim at a time, to the sinks
        this process has (several deliverers may run: each delivery goes out once)."""
        sent = 0
        for _ in range(limit):
            delivery = self.state.claim_delivery(self._token(), self.clock(),
                                                 self.config.lease, list(self.sinks))
            if delivery is None:
                break
            with self._holding(f"the delivery of {delivery.alert_id} to {delivery.sink}",
                               self._renewer(delivery)):
                sent += self.deliver(delivery)
        return sent

    def _renewer(self, delivery: Delivery) -> Callable[[float], bool]:
        return lambda until: self.state.renew_delivery(delivery, until)

    def deliver(self, delivery: Delivery) -> int:
        sink = self.sinks.get(delivery.sink)
        if sink is None:  # configured in an earlier run, not now: keep it owed
            return 0
        try:
            try:
                sink.send(delivery.payload)
            except DeliveryError:
                raise
            except Exception as exc:  # a sink bug on one alert: its failure
                raise DeliveryError(describe_error(exc)) from exc
        except DeliveryError as exc:
            self.metrics.alert_failures.inc()
            attempts = delivery.attempts + 1
            retry = None if attempts >= self.config.max_delivery_attempts else (
                self.clock() + (exc.retry_after or min(2.0 ** attempts, 600.0)))
            self.state.delivery_failed(delivery, str(exc), retry)
            log.warning("delivery of %s to %s failed (%s)%s", delivery.alert_id, sink.name, exc,
                        "; giving up" if retry is None else "")
            return 0
        if not self.state.delivered(delivery, self.clock()):
            log.warning("delivery of %s to %s: sent, but its lease had lapsed",
                        delivery.alert_id, sink.name)
        return 1

    # -- running -------------------------------------------------------------------------------
    def run_once(self, roles: Sequence[str] = ROLES) -> dict[str, int]:
        self.roles = tuple(roles)
        polled = self.poll_once() if "poller" in roles else 0
        scanned = 0
        while "scanner" in roles and ((batch := self.scan_once()) or self._scanning):
            scanned += batch  # the executor's scans in flight are waited for too
            if not batch:  # nothing more to hand over: wait for a scan in flight to end
                wait(self._in_flight(), timeout=1.0, return_when=FIRST_COMPLETED)
        delivered = self.deliver_once() if "deliverer" in roles else 0
        return {"polled": polled, "scanned": scanned, "delivered": delivered}

    def run(self, stop: threading.Event, tick: float = 1.0,
            extra: Sequence[tuple[Callable[[], int], str]] = (),
            roles: Sequence[str] = ROLES) -> None:
        self.roles = tuple(roles)
        def loop(step: Callable[[], int], name: str) -> None:
            while not stop.is_set():
                try:
                    did = step()
                except Exception:  # a bug in one pass must not stop the watch
                    log.exception("%s pass failed", name)
                    did = 0
                if not did:
                    stop.wait(tick)

        steps: list[tuple[Callable[[], int], str]] = [
            (step, name) for step, name, role in ((self.poll_once, "poll", "poller"),
                                                  (self.scan_once, "scan", "scanner"),
                                                  (self.deliver_once, "deliver", "deliverer"))
            if role in roles]
        threads = [threading.Thread(target=loop, args=(step, name), name=f"watch-{name}",
                                    daemon=True) for step, name in (*steps, *extra)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
