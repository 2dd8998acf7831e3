"""Gate decisions and uploaded environments on a real PostgreSQL server (the dialect's
``ON CONFLICT DO NOTHING``, text PostgreSQL refuses, the same rows as on SQLite)."""

from __future__ import annotations

import json

from sqlalchemy import select

from chainwatch.db import connect
from chainwatch.fleet import Fleet
from chainwatch.gate.decisions import DecisionLog, Recorded, decisions
from tests.integration.test_postgres import postgres_url

__all__ = ["postgres_url"]  # the fixture: a throwaway cluster for this module


def test_decisions_on_postgres(postgres_url: str) -> None:
    now = [2_000_000.0]
    log = DecisionLog(connect(postgres_url), clock=lambda: now[0])
    log.record([Recorded("check", "evil\x00name", "1.0.0", "block", "known-bad",
                         "reason with NUL \x00 and \ud800 " + "x" * 10_000, "lock")])
    entry = Recorded("proxy", "debug", "4.4.2", "block", "known-bad", "malware", "packument")
    for _ in range(20):
        log.record_once(entry)
    assert log.flush()
    other = DecisionLog(log.engine, clock=lambda: now[0])  # another process, same hour
    other.record_once(entry)
    assert other.flush()
    other.close()
    log.close()
    with log.engine.connect() as conn:
        got = [dict(r) for r in conn.execute(select(decisions).order_by(decisions.c.pk))
               .mappings()]
    assert log.dropped == 0 and other.dropped == 0
    assert [(r["origin"], r["package"]) for r in got] == [("check", "evil\ufffdname"),
                                                          ("proxy", "debug")]


def test_record_upload_on_postgres(postgres_url: str) -> None:
    fleet = Fleet(postgres_url)
    lock = json.dumps({"name": "app", "lockfileVersion": 3, "packages": {
        "": {"dependencies": {"chalk": "^5"}}, "node_modules/chalk": {"version": "5.6.1"}}})
    assert fleet.record_upload("ci/pg", "package-lock.json", lock.encode()) == 1
    assert [s.label for s in fleet.query("chalk@5.6.1")] == ["ci/pg"]
