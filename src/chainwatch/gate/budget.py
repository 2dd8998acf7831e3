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
import contextlib
import threading
import time
from collections.abc import Callable, Iterator

#: Bytes of Python objects (and the rendered body) per byte of packument JSON, rounded up.
PARSE_FACTOR = 5
#: The default budget of a proxy.
DEFAULT_BUDGET = 768 * 1024 * 1024


class BudgetExceeded(Exception):
    """A reservation that could not be granted (too large, or not in time)."""


class YieldToOlder(BudgetExceeded):
    """A younger request that holds memory and cannot grow at once: it should free what it
    holds and start over (holding nothing, it may wait), so the oldest can finish."""


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
        #: holds (by arrival number) that have memory reserved, and those waiting to grow
        self._holders: set[int] = set()
        self._growing = 0
        self._arrivals = 0

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

    def arrival(self) -> int:
        with self._cond:
            self._arrivals += 1
            return self._arrivals

    def may_wait(self, seq: int, holding: bool) -> bool:
        """Whether a request may wait for room: one that holds nothing may (unless a holder is
        waiting to grow, which goes first); among those that hold some, only the oldest (so
        two half-served requests never wait for each other)."""
        with self._cond:
            if not holding:
                return self._growing == 0
            return seq == min(self._holders, default=seq)

    def holding(self, seq: int, held: bool) -> None:
        with self._cond:
            if held:
                self._holders.add(seq)
            else:
                self._holders.discard(seq)

    def try_reserve(self, size: int) -> bool:
        with self._cond:
            return size <= self.total and self._try(size)

    @contextlib.contextmanager
    def growing(self) -> Iterator[None]:
        with self._cond:
            self._growing += 1
        try:
            yield
        finally:
            with self._cond:
                self._growing -= 1

    def release(self, size: int) -> None:
        with self._cond:
            self.reserved = max(0, self.reserved - size)
            self._cond.notify_all()


class Hold:
    """What one request has reserved: grown as it needs more, partly handed over to the cache,
    the rest released once when the request is done (``release`` may be called again).

    Requests that grow chunk by chunk could each hold part of the budget and wait for the rest
    forever (all of them 503 after the wait). So only the oldest request that holds memory
    waits to grow; a younger one that does not fit at once gives up (503) and frees what it
    held, and requests that hold nothing wait until no holder is waiting."""

    def __init__(self, budget: MemoryBudget, wait: float) -> None:
        self.budget = budget
        self.wait = wait
        self.amount = 0
        self.seq = budget.arrival()
        #: when this request stops waiting for room (also across starting over)
        self.deadline = time.monotonic() + wait

    async def grow_to(self, size: int) -> None:
        want = size - self.amount
        if want <= 0:
            return
        if self.amount and self.budget.try_reserve(want):
            self.amount += want
            return
        deadline = self.deadline
        while not self.budget.may_wait(self.seq, bool(self.amount)):
            if self.amount:
                raise YieldToOlder("memory budget busy: an older request goes first")
            if time.monotonic() >= deadline:
                raise self.budget._refuse(want, "memory budget busy")
            await asyncio.sleep(0.01)
        with self.budget.growing() if self.amount else contextlib.nullcontext():
            await self.budget.areserve(want, max(0.0, deadline - time.monotonic()))
        self.amount += want
        self.budget.holding(self.seq, True)

    def hand_over(self, size: int, store: Callable[[], None]) -> None:
        """Move ``size`` held bytes into the cache (``store`` puts them there)."""
        part = min(size, self.amount)
        self.budget.convert(part, store)
        self.amount -= part
        if not self.amount:
            self.budget.holding(self.seq, False)

    def release(self) -> None:
        amount, self.amount = self.amount, 0
        self.budget.holding(self.seq, False)
        if amount:
            self.budget.release(amount)
