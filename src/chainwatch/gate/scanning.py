"""Scan verdicts for the gate: from verdict memory, or by scanning a release once and storing it.

Only releases published within the policy's scan window are scanned on demand; older ones are
judged by the known-bad lists and by whatever verdict memory already holds. Concurrent requests
for the same release wait for one scan instead of starting several.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta
from typing import Any

from chainwatch.analysis.metadata import parse_time
from chainwatch.model import Verdict
from chainwatch.registry.packument import release_from_packument
from chainwatch.scan import Scanner
from chainwatch.verdicts import StoredVerdict, VerdictStore, stored_from_verdict, verdict_key

#: How long one read of a package's stored verdicts is reused before the database is asked again.
SNAPSHOT_SECONDS = 5.0


class ScanGate:
    def __init__(self, scanner: Scanner, store: VerdictStore | None, window: timedelta) -> None:
        self.scanner = scanner
        self.store = store
        self.window = window
        self._snapshots: dict[str, tuple[float, dict[str, StoredVerdict]]] = {}
        self._lock = threading.Lock()
        self._scanning: dict[str, threading.Lock] = {}
        self.scans = 0

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

    def cached(self, name: str, version: str, integrity: str | None) -> StoredVerdict | None:
        return self._snapshot(name).get(verdict_key(name, version, integrity))

    def in_window(self, published: datetime | None, now: datetime) -> bool:
        return published is None or now - published <= self.window

    def verdict(self, name: str, version: str, doc: dict[str, Any],
                now: datetime) -> StoredVerdict | None:
        """The stored verdict, or a fresh scan when the release is within the window."""
        release = release_from_packument(doc, version)
        hit = self.cached(name, version, release.integrity)
        if hit is not None or not self.in_window(parse_time(release.published), now):
            return hit
        key = verdict_key(name, version, release.integrity)
        with self._lock:
            lock = self._scanning.setdefault(key, threading.Lock())
        with lock:
            hit = self.cached(name, version, release.integrity)
            if hit is not None:
                return hit
            result = self.scanner.scan(f"{name}@{version}", None, doc)
            self.scans += 1
            stored = self._remember(result)
        with self._lock:
            self._scanning.pop(key, None)
        return stored

    def _remember(self, verdict: Verdict) -> StoredVerdict:
        stored = (self.store.put(verdict) if self.store is not None
                  else stored_from_verdict(verdict))
        name = verdict.target.name
        with self._lock:
            when, held = self._snapshots.get(name, (time.monotonic(), {}))
            self._snapshots[name] = (when, {**held, stored.key: stored})
        return stored
