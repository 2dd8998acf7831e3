"""A scanner and a verdict memory built when first needed, for ``check``.

Most of a lockfile's releases are older than the scan window and have no stored verdict to
read, so a run often scans nothing: it then imports no analysis code (rules, YARA, tree-sitter)
and, when no database exists yet, no database code and creates no database file.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chainwatch.archive.limits import Limits
    from chainwatch.gate.scanning import Scans, VerdictMemory
    from chainwatch.model import Verdict
    from chainwatch.registry.client import RegistryClient
    from chainwatch.verdicts import StoredVerdict


class DeferredScanner:
    """A ``Scans`` whose real scanner is made by ``make`` on the first scan (once, whatever
    the number of threads asking)."""

    def __init__(self, make: Callable[[], Scans], client: RegistryClient | None,
                 sandbox: bool) -> None:
        self.client = client
        self.sandbox = sandbox
        self._make = make
        self._made: Scans | None = None
        self._lock = threading.Lock()

    @property
    def made(self) -> Scans | None:
        """The real scanner, None while nothing was scanned."""
        return self._made

    def scan(self, spec: str, against: str | None = None,
             packument: dict[str, Any] | None = None, limits: Limits | None = None) -> Verdict:
        with self._lock:
            if self._made is None:
                self._made = self._make()
            made = self._made
        return made.scan(spec, against, packument, limits=limits)


class DeferredStore:
    """Verdict memory where no database exists yet: nothing was ever stored, so a read finds
    nothing without opening one; the first verdict kept opens it (``open_store``, which may
    create it), and every later read and write goes there. When it cannot be opened
    (``open_store`` gives None, having said why) verdicts are kept for this run only, as a
    gate without a database keeps them."""

    def __init__(self, open_store: Callable[[], VerdictMemory | None]) -> None:
        self._open = open_store
        self._store: VerdictMemory | None = None
        self._tried = False
        self._lock = threading.Lock()

    @property
    def opened(self) -> bool:
        return self._store is not None

    @property
    def current(self) -> VerdictMemory | None:
        """The real store once opened, else None."""
        return self._store

    def for_package(self, name: str) -> list[StoredVerdict]:
        store = self._store
        return store.for_package(name) if store is not None else []

    def for_packages(self, names: Iterable[str],
                     batch: int = 500) -> dict[str, list[StoredVerdict]]:
        store = self._store
        return store.for_packages(names, batch) if store is not None else {}

    def put(self, verdict: Verdict) -> StoredVerdict:
        with self._lock:
            if not self._tried:
                self._tried = True
                self._store = self._open()
            store = self._store
        if store is None:
            from chainwatch.verdicts import stored_from_verdict

            return stored_from_verdict(verdict)
        return store.put(verdict)
