"""A bounded, in-memory cache of per-file findings, keyed by what decides them.

A file's findings depend on its bytes, its path (which rules apply, the language, the path the
findings name), whether it runs at install time, and the rules. Popular packages share many
identical files across versions (a patch release changes a handful) and a run that scans many
releases, or a watcher that scans every new version, would otherwise analyse them again.

The key is (rules hash, sha256 of the bytes, path, install-time); sha256 makes two different
files with one key infeasible, so a hostile package cannot plant findings (or their absence) for
another package's file. Bounded by entries and by findings held; least recently used first out.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence

from chainwatch.analysis.rules import Rule
from chainwatch.model import Finding, PackageFile

#: At most this many files are remembered ...
MAX_ENTRIES = 50_000
#: ... and at most this many findings over all of them.
MAX_FINDINGS = 200_000

Key = tuple[str, str, str, bool]


def rules_hash(rules: Sequence[Rule]) -> str:
    """A digest of everything a rule set decides with (ids, matchers, params, tests, order)."""
    h = hashlib.sha256()
    for rule in rules:
        h.update(repr(rule).encode("utf-8", "surrogatepass"))
        h.update(b"\x00")
    return h.hexdigest()


class ResultCache:
    """Thread-safe LRU of ``key -> findings``."""

    def __init__(self, max_entries: int = MAX_ENTRIES, max_findings: int = MAX_FINDINGS) -> None:
        self.max_entries = max_entries
        self.max_findings = max_findings
        self._items: OrderedDict[Key, tuple[Finding, ...]] = OrderedDict()
        self._findings = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(rules: str, file: PackageFile, install_time: bool) -> Key:
        return (rules, file.sha256, file.path, install_time)

    def get(self, key: Key) -> tuple[Finding, ...] | None:
        with self._lock:
            found = self._items.get(key)
            if found is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return found

    def put(self, key: Key, findings: Sequence[Finding]) -> None:
        value = tuple(findings)
        if len(value) > self.max_findings:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._findings -= len(old)
            self._items[key] = value
            self._findings += len(value)
            while self._items and (len(self._items) > self.max_entries
                                   or self._findings > self.max_findings):
                _, dropped = self._items.popitem(last=False)
                self._findings -= len(dropped)

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._findings = 0
