"""The proxy keeps what it hides and refuses in the database, once per period, and answers the
same whatever the database does."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from sqlalchemy import select, text

from chainwatch.db import connect
from chainwatch.gate.check import Checker
from chainwatch.gate.decisions import DecisionLog, decisions
from chainwatch.gate.policy import Policy
from chainwatch.gate.proxy import Proxy
from chainwatch.intel import BuiltinKnownBad
from tests.unit.test_proxy import UP, resolver, upstream


def serve(log: DecisionLog | None, paths: list[str]) -> list[httpx.Response]:
    proxy = Proxy(UP, Checker(Policy(), None, BuiltinKnownBad()),
                  transport=httpx.MockTransport(upstream), resolver=resolver, decision_log=log)

    async def go() -> list[httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=proxy.app),
                                     base_url="http://proxy.test") as client:
            return [await client.get(p) for p in paths]

    return asyncio.run(go())


def stored(log: DecisionLog) -> list[tuple[object, ...]]:
    with log.engine.connect() as conn:
        return sorted(tuple(r) for r in conn.execute(select(
            decisions.c.origin, decisions.c.package, decisions.c.version, decisions.c.action,
            decisions.c.rule, decisions.c.source)))


def test_hidden_and_refused_versions_are_kept_once_per_period(tmp_path: Path) -> None:
    log = DecisionLog(connect(f"sqlite:///{tmp_path / 'cw.db'}"))
    paths = ["/debug"] * 30 + ["/debug/-/debug-4.4.2.tgz"] * 5 + ["/debug/-/debug-4.4.1.tgz"]
    answers = serve(log, paths)
    assert [r.status_code for r in answers] == [200] * 30 + [403] * 5 + [200]
    assert log.flush()
    assert stored(log) == [
        ("proxy", "debug", "4.4.2", "block", "known-bad", "packument"),
        ("proxy", "debug", "4.4.2", "block", "known-bad", "tarball"),
        ("proxy", "debug", "4.5.0", "block", "min-age", "packument"),
    ]
    # a second proxy process (or a restart) within the period adds no row
    serve(DecisionLog(log.engine), ["/debug", "/debug/-/debug-4.4.2.tgz"])
    assert log.flush() and len(stored(log)) == 3
    log.close()


def test_a_broken_database_changes_no_answer(tmp_path: Path) -> None:
    paths = ["/debug", "/debug/-/debug-4.4.2.tgz", "/debug/-/debug-4.5.0.tgz",
             "/debug/-/debug-4.4.1.tgz"]
    log = DecisionLog(connect(f"sqlite:///{tmp_path / 'cw.db'}"))
    with log.engine.begin() as conn:
        conn.execute(text("DROP TABLE gate_decisions"))
    broken = serve(log, paths)
    plain = serve(None, paths)
    assert [(r.status_code, r.content) for r in broken] == [(r.status_code, r.content) for r in plain]
    assert [r.status_code for r in broken] == [200, 403, 403, 200]
    assert log.flush() and log.dropped == 4
    log.close()


def test_the_proxy_writes_what_is_queued_when_it_stops(tmp_path: Path) -> None:
    """The lifespan's end (uvicorn stopping) flushes the queue: no flush() by the caller."""
    log = DecisionLog(connect(f"sqlite:///{tmp_path / 'cw.db'}"))
    proxy = Proxy(UP, Checker(Policy(), None, BuiltinKnownBad()),
                  transport=httpx.MockTransport(upstream), resolver=resolver, decision_log=log)

    async def go() -> int:
        async with proxy.app.router.lifespan_context(proxy.app), httpx.AsyncClient(
                transport=httpx.ASGITransport(app=proxy.app),
                base_url="http://proxy.test") as client:
            return (await client.get("/debug/-/debug-4.4.2.tgz")).status_code

    assert asyncio.run(go()) == 403
    assert stored(log) == [("proxy", "debug", "4.4.2", "block", "known-bad", "tarball")]
