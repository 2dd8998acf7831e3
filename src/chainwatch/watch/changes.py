"""Following a CouchDB-style ``_changes`` feed (the npm replication endpoint, or a mirror's).

Each pass asks for the changes after the stored ``since`` checkpoint (long-polling), marks the
watched packages among them due for an immediate poll, and only then moves the checkpoint: a
crash replays a few changes, never skips one.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx

from chainwatch.watch.state import WatchState

log = logging.getLogger("chainwatch.watch")


class ChangesFeed:
    def __init__(self, url: str, state: WatchState, watched: set[str],
                 http: httpx.Client | None = None, batch: int = 1000,
                 longpoll_ms: int = 25000) -> None:
        self.url = url
        self.state = state
        self.watched = watched
        self.http = http or httpx.Client(timeout=httpx.Timeout(60.0, connect=10.0))
        self.batch = batch
        self.longpoll_ms = longpoll_ms
        self.key = f"changes:{url}"

    def follow_once(self) -> int:
        """One request to the feed; the number of watched packages marked due."""
        since = self.state.checkpoint(self.key) or "now"
        params: dict[str, Any] = {"since": since, "limit": self.batch, "feed": "longpoll",
                                  "timeout": self.longpoll_ms}
        try:
            r = self.http.get(self.url, params=params)
            r.raise_for_status()
            doc = r.json()
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("changes feed %s: %s", self.url, exc)
            return 0
        rows = doc.get("results") if isinstance(doc, dict) else None
        if not isinstance(rows, list) or "last_seq" not in doc:
            log.warning("changes feed %s: not a _changes answer", self.url)
            return 0
        names = sorted({str(row.get("id")) for row in rows if isinstance(row, dict)
                        and row.get("id") in self.watched})
        if names:
            self.state.mark_due(names)
        self.state.set_checkpoint(self.key, str(doc["last_seq"]))
        return len(names)
