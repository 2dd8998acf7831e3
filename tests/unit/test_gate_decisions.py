"""The gate's decision log: bounded rows, one proxy row per period, never failing the caller."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from chainwatch.db import connect
from chainwatch.gate import decisions as mod
from chainwatch.gate.decisions import DecisionLog, Recorded, decisions


def rows(log: DecisionLog) -> list[dict[str, object]]:
    with log.engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(decisions).order_by(decisions.c.pk))
                .mappings()]


def make(tmp_path: Path, **kw: object) -> DecisionLog:
    return DecisionLog(connect(f"sqlite:///{tmp_path / 'cw.db'}"), **kw)  # type: ignore[arg-type]


def test_record_writes_each_decision_with_its_source(tmp_path: Path) -> None:
    log = make(tmp_path)
    log.record([Recorded("check", "debug", "4.4.2", "block", "known-bad", "malware", "a/package-lock.json"),
                Recorded("check", "ms", "2.1.3", "warn", "min-age", "young", "a/package-lock.json"),
                Recorded("check", "left-pad", "1.3.0", "allow", "min-age", "exception", None)])
    got = rows(log)
    assert [(r["package"], r["action"], r["rule"], r["source"]) for r in got] == [
        ("debug", "block", "known-bad", "a/package-lock.json"),
        ("ms", "warn", "min-age", "a/package-lock.json"),
        ("left-pad", "allow", "min-age", None)]
    assert all(r["origin"] == "check" and r["once"] is None for r in got)
    assert str(got[0]["time"]).endswith("Z")
    assert [r["package"] for r in log.recent(action="warn")] == ["ms"]


def test_hostile_text_is_clipped_and_storable(tmp_path: Path) -> None:
    log = make(tmp_path)
    log.record([Recorded("proxy", "p" * 10_000, "1.0.0-" + "x" * 5_000, "block", "r" * 1_000,
                         "evil\x00reason \ud800 " + "y" * 1_000_000, "s" * 100_000)])
    (row,) = rows(log)
    assert len(str(row["package"])) <= mod.MAX_PACKAGE
    assert len(str(row["version"])) <= mod.MAX_VERSION
    assert len(str(row["rule"])) <= mod.MAX_RULE
    assert len(str(row["reason"])) <= mod.MAX_REASON
    assert len(str(row["source"])) <= mod.MAX_SOURCE
    assert "\x00" not in str(row["reason"]) and str(row["reason"]).startswith("evil")
    assert str(row["package"]).endswith("…")


def test_unknown_origin_or_action_is_never_stored_as_given(tmp_path: Path) -> None:
    log = make(tmp_path)
    log.record([Recorded("<script>", "a", "1.0.0", "hidden", "x", "y")])
    (row,) = rows(log)
    assert row["origin"] == "check" and row["action"] == "block"


def test_proxy_decisions_are_one_row_per_period_whoever_writes_them(tmp_path: Path) -> None:
    now = [1_000_000.0]
    log = make(tmp_path, clock=lambda: now[0], period=3600)
    entry = Recorded("proxy", "debug", "4.4.2", "block", "known-bad", "malware", "packument")
    for _ in range(200):
        log.record_once(entry)
    log.record_once(Recorded("proxy", "debug", "4.4.2", "block", "known-bad", "malware", "tarball"))
    assert log.flush()
    assert len(rows(log)) == 2
    # a restarted proxy (or a second process) in the same period adds nothing
    again = DecisionLog(log.engine, clock=lambda: now[0] + 60, period=3600)
    again.record_once(entry)
    assert again.flush() and len(rows(log)) == 2
    # the next period is a new row
    now[0] += 3600
    log.record_once(entry)
    assert log.flush() and len(rows(log)) == 3
    log.close()
    again.close()


def test_close_writes_what_is_queued(tmp_path: Path) -> None:
    log = make(tmp_path)
    for i in range(1_200):  # more than one batch
        log.record_once(Recorded("proxy", f"p{i}", "1.0.0", "block", "min-age", "young"))
    log.close(timeout=30)
    with log.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(decisions)).scalar_one() == 1_200
    log.record_once(Recorded("proxy", "late", "1.0.0", "block", "min-age", "young"))  # ignored
    assert len(rows(log)) == 1_200


def test_a_database_failure_never_reaches_the_caller_and_is_logged_once(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    log = make(tmp_path)
    with log.engine.begin() as conn:
        conn.execute(text("DROP TABLE gate_decisions"))
    entry = Recorded("check", "debug", "4.4.2", "block", "known-bad", "malware")
    with caplog.at_level(logging.DEBUG, logger="chainwatch.gate.decisions"):
        log.record([entry])
        log.record([entry, entry])
        log.record_once(Recorded("proxy", "a", "1.0.0", "block", "r", "x"))
        assert log.flush()
    assert log.dropped == 4
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "gate_decisions" in warnings[0].getMessage()
    log.close()


def test_a_full_queue_drops_instead_of_blocking(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    gate = threading.Event()
    log = make(tmp_path, queue_max=2)
    real = log._insert

    def slow(batch: list[dict[str, object]]) -> None:
        gate.wait(10)
        real(batch)

    monkeypatch.setattr(log, "_insert", slow)
    for i in range(50):
        log.record_once(Recorded("proxy", f"p{i}", "1.0.0", "block", "r", "x"))
    assert log.dropped > 0  # the writer is stuck and the queue holds two
    gate.set()
    log.close(timeout=30)
    assert len(rows(log)) + log.dropped == 50 and len(rows(log)) > 0
