"""Grouping flagged releases into incidents.

Two releases belong together when they share any of: the publishing account within the time
window (default one hour), a payload fingerprint (the same normalised added code), a known-bad
advisory (one campaign's record), or an indicator (a URL, IP, wallet address or webhook; hosts
only when not a shared service). Groups are the connected components of those links; an
incident's id comes from its earliest member, so it stays the same as later releases join.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterable
from datetime import datetime, timedelta

from chainwatch.analysis.payload import SHARED_SERVICES
from chainwatch.incidents.model import Incident, Observation

WINDOW = timedelta(hours=1)


def _links(obs: Observation) -> set[str]:
    keys = {f"fp:{fp}" for fp in obs.fingerprints}
    for kind in ("urls", "ips", "wallets", "webhooks"):
        keys.update(f"{kind}:{v}" for v in obs.indicators.get(kind, ()))
    keys.update(f"host:{h}" for h in obs.indicators.get("hosts", ()) if h not in SHARED_SERVICES)
    keys.update(f"advisory:{a}" for a in obs.advisories)  # one campaign's record
    return keys


def cluster(observations: Iterable[Observation], window: timedelta = WINDOW) -> list[Incident]:
    items = list({o.key: o for o in observations}.values())  # one observation per release
    parent = list(range(len(items)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(a: int, b: int) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    owner: dict[str, int] = {}
    for i, obs in enumerate(items):
        for key in _links(obs):
            if key in owner:
                union(owner[key], i)
            else:
                owner[key] = i
    by_publisher: dict[str, list[tuple[datetime, int]]] = {}
    for i, obs in enumerate(items):
        when = obs.when
        if obs.publisher and when is not None:
            by_publisher.setdefault(obs.publisher, []).append((when, i))
    for timed in by_publisher.values():
        timed.sort()
        for (ta, a), (tb, b) in itertools.pairwise(timed):
            if tb - ta <= window:
                union(a, b)
    groups: dict[int, list[Observation]] = {}
    for i, obs in enumerate(items):
        groups.setdefault(find(i), []).append(obs)
    incidents = []
    for members in groups.values():
        members.sort(key=lambda o: (o.published or "9999", o.key))
        digest = hashlib.sha256(members[0].key.encode()).hexdigest()[:10]
        incidents.append(Incident(f"INC-{digest}", members))
    incidents.sort(key=lambda inc: (inc.members[0].published or "9999", inc.id))
    return incidents
