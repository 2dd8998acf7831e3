"""One memory budget for everything the proxy holds on a stranger's behalf.

Buffered upstream packuments (while they are read, parsed and rendered), the packument cache
and on-demand scans all draw on the same number of bytes. A reservation that does not fit first
shrinks the cache (the only part that can give memory back), then waits for other work to
finish; a reservation that could never fit, or that waits too long, is refused and the caller
answers with an error instead of growing. Sizes of parsed JSON are estimates (``PARSE_FACTOR``
times the raw bytes, measured with tracemalloc on a 5 MB packument: 3.6x for ``orjson.loads``
plus the rendered body), so the budget bounds what chainwatch asks for, not what the allocator
keeps.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

#: Bytes of Python objects (and the rendered body) per byte of packument JSON, rounded up.
PARSE_FACTOR = 5
#: The default budget of a proxy.
DEFAULT_BUDGET = 768 * 1024 * 1024


class BudgetExceeded(Exception):
    """A reservation that could not be granted (too large, or not in time)."""


class MemoryBudget:
    """Bytes reserved by work in flight plus bytes held by a shrinkable cache, never more than
    ``total``. Thread-safe: the event loop and scan worker threads share it."""

    def __init__(self, total: int = DEFAULT_BUDGET) -> None:
        self.total = total
        self.reserved = 0
        self.peak = 0
        self.refused = 0
        self._held: Callable[[], int] = lambda: 0
        self._shrink: Callable[[int], None] = lambda _limit: None
        self._cond = threading.Condition()

    def attach_cache(self, held: Callable[[], int], shrink: Callable[[int], None]) -> None:
        """``held()`` is what the cache holds now; ``shrink(limit)`` drops entries until the
        cache holds at most ``limit`` bytes."""
        self._held, self._shrink = held, shrink

    @property
    def used(self) -> int:
        return self.reserved + self._held()

    def _try(self, size: int) -> bool:
        if self.reserved + self._held() + size > self.total:
            self._shrink(max(0, self.total - self.reserved - size))
            if self.reserved + self._held() + size > self.total:
                return False
        self.reserved += size
        self.peak = max(self.peak, self.reserved + self._held())
        return True

    def _refuse(self, size: int, why: str) -> BudgetExceeded:
        self.refused += 1
        return BudgetExceeded(f"{why}: {size} bytes asked, {self.total} bytes budget, "
                              f"{self.reserved} reserved")

    def reserve(self, size: int, timeout: float) -> None:
        """Reserve ``size`` bytes, waiting up to ``timeout`` seconds (from a worker thread)."""
        if size > self.total:
            raise self._refuse(size, "larger than the whole memory budget")
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._try(size):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise self._refuse(size, "memory budget busy")
                self._cond.wait(min(left, 0.05))

    async def areserve(self, size: int, timeout: float) -> None:
        """``reserve`` for the event loop: polls instead of blocking the loop."""
        if size > self.total:
            raise self._refuse(size, "larger than the whole memory budget")
        deadline = time.monotonic() + timeout
        while True:
            with self._cond:
                if self._try(size):
                    return
            if time.monotonic() >= deadline:
                raise self._refuse(size, "memory budget busy")
            await asyncio.sleep(0.01)

    def convert(self, size: int, store: Callable[[], None]) -> None:
        """Release ``size`` reserved bytes and run ``store`` (which moves at most that much into
        the cache) as one step, so the total never rises on the way."""
        with self._cond:
            self.reserved = max(0, self.reserved - size)
            store()
            self._cond.notify_all()

    def release(self, size: int) -> None:
        with self._cond:
            self.reserved = max(0, self.reserved - size)
            self._cond.notify_all()


class Hold:
    """What one request has reserved: grown as it needs more, partly handed over to the cache,
    the rest released once when the request is done (``release`` may be called again)."""

    def __init__(self, budget: MemoryBudget, wait: float) -> None:
        self.budget = budget
        self.wait = wait
        self.amount = 0

    async def grow_to(self, size: int) -> None:
        want = size - self.amount
        if want > 0:
            await self.budget.areserve(want, self.wait)
            self.amount += want

    def hand_over(self, size: int, store: Callable[[], None]) -> None:
        """Move ``size`` held bytes into the cache (``store`` puts them there)."""
        part = min(size, self.amount)
        self.budget.convert(part, store)
        self.amount -= part

    def release(self) -> None:
        amount, self.amount = self.amount, 0
        if amount:
            self.budget.release(amount)
