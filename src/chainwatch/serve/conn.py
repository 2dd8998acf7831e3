"""Connection limits uvicorn lacks: a deadline for a request's headers, and a cap per client.

uvicorn answers ``503`` to everyone once ``limit_concurrency`` connections are open, and it
never times out a request whose headers do not finish: a few hundred half-sent requests
(slowloris) would hold the server for as long as the sender likes. Here every connection must
finish a request's headers within HEADER_TIMEOUT_S of opening (and of its previous response),
else it is closed; and one client address may hold at most ``per_client`` connections, so
half-open connections from one place cannot use up the limit for everyone else.
"""

from __future__ import annotations

import asyncio
from collections import Counter

from uvicorn.protocols.http.h11_impl import H11Protocol

#: seconds a connection has to send a complete request head
HEADER_TIMEOUT_S = 10.0
#: connections one client address may hold at once
MAX_PER_CLIENT = 64


def guarded_protocol(header_timeout: float = HEADER_TIMEOUT_S,
                     per_client: int = MAX_PER_CLIENT) -> type[asyncio.Protocol]:
    """An h11 protocol class with its own per-client count (one per server)."""
    held: Counter[str] = Counter()

    class Guarded(H11Protocol):
        _timer: asyncio.TimerHandle | None = None
        _peer: str | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            peer = self.client[0] if self.client else ""
            if held[peer] >= per_client:
                transport.abort()  # not counted: connection_lost finds no _peer
                return
            held[peer] += 1
            self._peer = peer
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            if self._peer is not None:
                held[self._peer] -= 1
                if held[self._peer] <= 0:
                    del held[self._peer]
                self._peer = None
            super().connection_lost(exc)

        def handle_events(self) -> None:
            before = self.cycle
            super().handle_events()
            if self.cycle is not before:  # a request's head arrived in full
                self._disarm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm()  # the next request's head has the same deadline

        def _arm(self) -> None:
            self._disarm()
            self._timer = self.loop.call_later(header_timeout, self._expired)

        def _disarm(self) -> None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

        def _expired(self) -> None:
            self._timer = None
            if not self.transport.is_closing():
                self.transport.abort()

    return Guarded
