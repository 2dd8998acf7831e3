"""The serve read model against a real SQLite database (PostgreSQL: tests/integration)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, insert

from chainwatch.db import connect
from chainwatch.fleet import environments, holdings
from chainwatch.gate.decisions import decisions
from chainwatch.serve.queries import MAX_LIMIT, ReadModel, decode_cursor, encode_cursor
from chainwatch.verdicts import verdicts
from chainwatch.watch.state import alerts, deliveries, versions

HOSTILE = "<script>alert(1)</script>\"'&\u202e\x1b[31m"


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    return connect(f"sqlite:///{tmp_path / 'serve.db'}")


def scan_doc(name: str, version: str, level: str, **extra: Any) -> dict[str, Any]:
    return {"schema": "chainwatch.scan/1", "package": name, "version": version,
            "verdict": level, "score": 90 if level == "malicious" else 0, "baseline": None,
            "explanation": "", "findings": [], "metadata_signals": [], **extra}


def put_verdict(engine: Engine, name: str, version: str, level: str, at: datetime,
                key: str | None = None, **extra: Any) -> str:
    key = key or f"sha512-{name}-{version}"
    doc = scan_doc(name, version, level, **extra)
    with engine.begin() as conn:
        conn.execute(insert(verdicts).values(
            key=key, package=name, version=version, integrity=key, level=level,
            score=doc["score"], baseline=doc["baseline"], explanation="",
            top_rule="r" if level != "benign"
            else None, top_message=HOSTILE if level != "benign" else None,
            scanned_at=at.isoformat(timespec="seconds"), elapsed_s=0.1,
            document=json.dumps(doc)))
    return key


def put_env(engine: Engine, label: str, when: str, held: list[tuple[str, str]]) -> int:
    with engine.begin() as conn:
        key = conn.execute(insert(environments).values(
            label=label, kind="package-lock", source=f"{label}/package-lock.json",
            recorded_at=when)).inserted_primary_key
        assert key is not None
        conn.execute(insert(holdings), [{"environment": key[0], "name": n, "version": v,
                                         "dev": False, "path": f"app > {n}"} for n, v in held])
        return int(key[0])


NOW = datetime.now(UTC).replace(microsecond=0)


def test_verdicts_are_newest_first_and_paged_by_a_cursor_stable_under_inserts(
        engine: Engine) -> None:
    for i in range(7):
        put_verdict(engine, f"pkg{i}", "1.0.0", "benign", NOW - timedelta(minutes=10 - i))
    # two verdicts in the same second: the key orders them, none is lost or repeated
    put_verdict(engine, "same-a", "1.0.0", "benign", NOW - timedelta(minutes=20), key="k-a")
    put_verdict(engine, "same-b", "1.0.0", "benign", NOW - timedelta(minutes=20), key="k-b")
    model = ReadModel(engine)
    first = model.verdicts(limit=4)
    assert [r.package for r in first.items] == ["pkg6", "pkg5", "pkg4", "pkg3"]
    assert first.next_cursor
    put_verdict(engine, "newer", "1.0.0", "malicious", NOW)  # arrives between two pages
    seen = [r.package for r in first.items]
    cursor = first.next_cursor
    while cursor:
        page = model.verdicts(limit=4, cursor=cursor)
        seen += [r.package for r in page.items]
        cursor = page.next_cursor
    assert seen == ["pkg6", "pkg5", "pkg4", "pkg3", "pkg2", "pkg1", "pkg0", "same-b", "same-a"]
    assert model.verdicts(limit=1).items[0].package == "newer"


def test_verdict_filters(engine: Engine) -> None:
    put_verdict(engine, "chalk", "5.6.1", "malicious", NOW)
    put_verdict(engine, "chalk", "5.6.0", "benign", NOW - timedelta(days=3))
    put_verdict(engine, "debug", "4.4.2", "suspicious", NOW - timedelta(days=1))
    model = ReadModel(engine)
    assert [r.version for r in model.verdicts(package="chalk").items] == ["5.6.1", "5.6.0"]
    assert [r.package for r in model.verdicts(level="suspicious").items] == ["debug"]
    since = (NOW - timedelta(days=2)).date().isoformat()
    assert {r.version for r in model.verdicts(since=since).items} == {"5.6.1", "4.4.2"}
    assert model.verdicts(since=(NOW - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
                          ).items[0].version == "5.6.1"
    row = model.verdicts(package="chalk", level="malicious").items[0]
    assert row.top_message == HOSTILE  # author-controlled text comes back as data, exactly
    doc = model.verdict(row.key)
    assert doc is not None and doc["schema"] == "chainwatch.scan/1" and doc["version"] == "5.6.1"
    assert model.verdict("no-such-key") is None


@pytest.mark.parametrize("kwargs", [
    {"package": "../etc/passwd"}, {"package": "a" * 300}, {"package": ""},
    {"level": "evil"}, {"since": "yesterday"}, {"since": "9" * 100},
    {"cursor": "not a cursor"}, {"cursor": "x" * 10_000},
    {"cursor": encode_cursor("alerts", 1.0, "a")},  # another list's cursor
    {"cursor": encode_cursor("verdicts", 1, 2)},  # wrong types
])
def test_bad_parameters_are_value_errors(engine: Engine, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        ReadModel(engine).verdicts(**kwargs)


def test_limit_is_bounded(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(insert(verdicts), [{
            "key": f"k{i:04}", "package": "p", "version": f"1.0.{i}", "integrity": None,
            "level": "benign", "score": 0, "baseline": None, "explanation": "",
            "top_rule": None, "top_message": None, "scanned_at": NOW.isoformat(),
            "elapsed_s": 0.0, "document": "{}"} for i in range(MAX_LIMIT + 5)])
    model = ReadModel(engine)
    assert len(model.verdicts(limit=10**9).items) == MAX_LIMIT
    assert len(model.verdicts(limit=-5).items) == 1


def test_cursor_round_trip_and_refusals() -> None:
    c = encode_cursor("verdicts", "2026-01-01T00:00:00+00:00", "k")
    assert decode_cursor("verdicts", c, (str, str)) == ["2026-01-01T00:00:00+00:00", "k"]
    with pytest.raises(ValueError):
        decode_cursor("decisions", c, (int,))
    with pytest.raises(ValueError):
        decode_cursor("decisions", encode_cursor("decisions", True), (int,))


def test_alerts_carry_their_deliveries_and_page(engine: Engine) -> None:
    now = time.time()
    with engine.begin() as conn:
        for i in range(3):
            conn.execute(insert(alerts).values(id=f"a{i}", kind="release", created_at=now + i,
                                               payload=json.dumps({"package": HOSTILE, "i": i})))
        conn.execute(insert(alerts).values(id="bad", kind="release", created_at=now - 10,
                                           payload="{not json"))
        conn.execute(insert(deliveries), [
            {"alert_id": "a2", "sink": "webhook:abc123", "status": "sent", "attempts": 1,
             "next_attempt": 0.0, "sent_at": now + 3, "last_error": None},
            {"alert_id": "a2", "sink": "slack:def456", "status": "failed", "attempts": 5,
             "next_attempt": 0.0, "sent_at": None, "last_error": "HTTP 500"}])
    model = ReadModel(engine)
    page = model.alerts(limit=2)
    assert [a.id for a in page.items] == ["a2", "a1"]
    assert [(d.sink, d.status) for d in page.items[0].deliveries] == [
        ("webhook:abc123", "sent"), ("slack:def456", "failed")]
    assert page.items[0].payload["package"] == HOSTILE
    rest = model.alerts(limit=2, cursor=page.next_cursor)
    assert [a.id for a in rest.items] == ["a0", "bad"] and rest.next_cursor is None
    assert rest.items[1].payload == {"unreadable": "{not json"}


def test_exposure_has_first_and_last_seen_per_label(engine: Engine) -> None:
    put_env(engine, "repo-a", "2026-09-08T10:00:00+00:00", [("chalk", "5.6.1")])
    put_env(engine, "repo-a", "2026-09-09T10:00:00+00:00", [("chalk", "5.6.1")])
    put_env(engine, "repo-a", "2026-09-10T10:00:00+00:00", [("chalk", "5.6.2")])
    put_env(engine, "repo-b", "2026-09-08T12:00:00+00:00", [("chalk", "5.3.0"),
                                                            ("debug", "4.4.2")])
    put_env(engine, HOSTILE, "2026-09-08T13:00:00+00:00", [("chalk", "5.6.1")])
    model = ReadModel(engine)
    rows = model.exposure("chalk@5.6.1")
    by_label = {r.label: r for r in rows}
    assert set(by_label) == {"repo-a", HOSTILE}
    assert by_label["repo-a"].first_seen == "2026-09-08T10:00:00+00:00"
    assert by_label["repo-a"].last_seen == "2026-09-09T10:00:00+00:00"
    assert by_label["repo-a"].path == "app > chalk"
    assert {(r.label, r.version) for r in model.exposure("chalk@^5.6.0")} == {
        ("repo-a", "5.6.1"), ("repo-a", "5.6.2"), (HOSTILE, "5.6.1")}
    assert {r.label for r in model.exposure("chalk")} == {"repo-a", "repo-b", HOSTILE}
    for bad in ("chalk@not a range", "../x@1.0.0", "x" * 600):
        with pytest.raises(ValueError):
            model.exposure(bad)


def test_environments_page_with_package_counts(engine: Engine) -> None:
    for i in range(5):
        put_env(engine, f"env{i}", f"2026-09-0{i + 1}T00:00:00+00:00",
                [("a", "1.0.0")] * (i + 1))
    model = ReadModel(engine)
    page = model.environments(limit=3)
    assert [(e.label, e.packages) for e in page.items] == [("env4", 5), ("env3", 4),
                                                           ("env2", 3)]
    rest = model.environments(limit=3, cursor=page.next_cursor)
    assert [e.label for e in rest.items] == ["env1", "env0"] and rest.next_cursor is None


def test_decisions_filter_and_page(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(insert(decisions), [
            {"time": f"2026-09-08T10:00:0{i}+00:00", "origin": "proxy" if i % 2 else "check",
             "package": "chalk", "version": "5.6.1", "action": "block" if i < 3 else "warn",
             "rule": "known-bad", "reason": HOSTILE, "source": None} for i in range(5)])
    model = ReadModel(engine)
    blocked = model.decisions(action="block")
    assert [d.time[-7:-6] for d in blocked.items] == ["2", "1", "0"]
    assert blocked.items[0].reason == HOSTILE
    page = model.decisions(limit=2)
    assert [d.action for d in page.items] == ["warn", "warn"]
    assert len(model.decisions(limit=2, cursor=page.next_cursor).items) == 2
    with pytest.raises(ValueError):
        model.decisions(action="explode")


def wave(engine: Engine) -> None:
    """Two malicious releases by one publisher within the hour: one incident."""
    base = NOW - timedelta(hours=2)
    for i, name in enumerate(("chalk", "debug")):
        put_verdict(engine, name, "9.9.9", "malicious", NOW - timedelta(minutes=i),
                    publisher="qix", published=(base + timedelta(minutes=5 * i)).isoformat())
    put_verdict(engine, "lodash", "4.17.21", "benign", NOW)


def test_incidents_brief_and_report(engine: Engine) -> None:
    wave(engine)
    put_env(engine, "repo-a", "2026-09-08T10:00:00+00:00", [("chalk", "9.9.9")])
    model = ReadModel(engine)
    found = model.incidents()
    assert len(found) == 1 and found[0].size == 2 and found[0].level == "malicious"
    brief = model.incident(found[0].id)
    assert brief is not None and brief["schema"] == "chainwatch.brief/1"
    assert "repo-a" in json.dumps(brief)
    html = model.incident_html(found[0].id)
    assert html is not None and html.lstrip().lower().startswith("<!doctype html")
    assert model.incident("INC-nope") is None and model.incident_html("x" * 100) is None


def test_incidents_are_recomputed_when_a_verdict_arrives(engine: Engine) -> None:
    model = ReadModel(engine)
    assert model.incidents() == []
    wave(engine)
    assert len(model.incidents()) == 1


def test_overview_counts_and_charts(engine: Engine) -> None:
    wave(engine)
    put_verdict(engine, "old", "1.0.0", "suspicious", NOW - timedelta(days=30))
    put_env(engine, "repo-a", NOW.isoformat(), [("chalk", "9.9.9")])
    with engine.begin() as conn:
        conn.execute(insert(decisions).values(
            time=NOW.isoformat(), origin="check", package="chalk", version="9.9.9",
            action="block", rule="known-bad", reason="x", source=None))
        published = NOW - timedelta(minutes=10)
        conn.execute(insert(versions), [
            {"name": "chalk", "version": f"9.9.{i}", "published": published.isoformat(),
             "publisher": "qix", "seen_at": 0.0, "status": "done", "attempts": 1,
             "level": "malicious", "scanned_at": published.timestamp() + wait}
            for i, wait in enumerate((30.0, 60.0, 90.0))])
        conn.execute(insert(alerts).values(id="a", kind="release", created_at=time.time(),
                                           payload="{}"))
    ov = ReadModel(engine).overview(days=7)
    assert ov.counts["malicious"] == 2 and ov.counts["benign"] == 1
    assert ov.counts["suspicious"] == 1 and ov.counts["alerts"] == 1
    assert ov.counts["incidents"] == 2 and ov.counts["environments"] == 1  # wave + "old"
    assert ov.counts["blocked"] == 1
    assert len(ov.verdicts_per_day) == 7 and ov.verdicts_per_day[-1][0] == NOW.date().isoformat()
    assert ov.verdicts_per_day[-1][1] == {"benign": 1, "suspicious": 0, "malicious": 2}
    assert sum(sum(d.values()) for _, d in ov.verdicts_per_day) == 3  # the 30-day-old one is out
    latency = dict(ov.latency_per_day)
    assert latency[NOW.date().isoformat()] == pytest.approx(60.0)
    assert [v.package for v in ov.latest_flagged] == ["chalk", "debug", "old"]
    assert [a.id for a in ov.latest_alerts] == ["a"]


def test_the_read_indexes_are_created(engine: Engine) -> None:
    from sqlalchemy import inspect

    from chainwatch.serve.queries import READ_INDEXES

    ReadModel(engine)
    ReadModel(engine)
    have = {(t, i["name"]) for t in {t for _, t, _ in READ_INDEXES}
            for i in inspect(engine).get_indexes(t)}
    assert {(t, n) for n, t, _ in READ_INDEXES} <= have


def test_environment_labels_group_sources_and_agree_with_the_overview(engine: Engine) -> None:
    """A label recorded from a lockfile and node_modules (and again later) is one
    environment with two sources: the list, the overview and a brief count the same."""
    put_env(engine, "web", "2026-09-01T00:00:00+00:00", [("chalk", "5.6.0")])
    put_env(engine, "web", "2026-09-02T00:00:00+00:00", [("chalk", "5.6.1"), ("debug", "4.4.1")])
    with engine.begin() as conn:
        key = conn.execute(insert(environments).values(
            label="web", kind="node_modules", source="web/node_modules",
            recorded_at="2026-09-03T00:00:00+00:00")).inserted_primary_key
        assert key is not None
        conn.execute(insert(holdings), [{"environment": key[0], "name": "chalk",
                                         "version": "5.6.1", "dev": False, "path": "chalk"}])
    for i in range(3):
        put_env(engine, f"svc{i}", f"2026-09-0{4 + i}T00:00:00+00:00", [("a", "1.0.0")])
    model = ReadModel(engine)
    assert len(model.environments(limit=50).items) == 6  # every recording
    first = model.environment_labels(limit=3)
    assert [r.label for r in first.items] == ["svc2", "svc1", "svc0"]
    rest = model.environment_labels(limit=3, cursor=first.next_cursor)
    assert [r.label for r in rest.items] == ["web"] and rest.next_cursor is None
    web = rest.items[0]
    assert web.recordings == 3 and web.last_recorded == "2026-09-03T00:00:00+00:00"
    assert [(s.kind, s.packages) for s in web.sources] == [("node_modules", 1),
                                                           ("package-lock", 2)]
    assert web.packages == 2  # chalk@5.6.1 and debug@4.4.1 across the latest of each source
    labels = len(first.items) + len(rest.items)
    assert model.overview(days=1).counts["environments"] == labels == 4


def test_blocked_counts_distinct_blocks_not_runs(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(insert(decisions), [
            {"time": f"2026-09-08T10:00:0{i}+00:00", "origin": "check", "package": "chalk",
             "version": "5.6.1", "action": "block", "rule": "known-bad", "reason": "x",
             "source": "package-lock.json"} for i in range(3)])
        conn.execute(insert(decisions).values(
            time="2026-09-08T10:00:09+00:00", origin="check", package="debug", version="4.4.2",
            action="block", rule="known-bad", reason="x", source="package-lock.json"))
    counts = ReadModel(engine).overview(days=1).counts
    assert counts["blocked"] == 2 and counts["block_runs"] == 4


def test_incident_rows_show_the_hypothesis_title_and_a_stable_update_time(
        engine: Engine) -> None:
    from chainwatch.incidents.ach import HYPOTHESES

    wave(engine)
    first = ReadModel(engine).incidents()[0]
    assert first.hypothesis in HYPOTHESES.values()
    time.sleep(1.1)
    again = ReadModel(engine).incidents()[0]  # a new model: rebuilt, not cached
    assert again.updated_at == first.updated_at
    # the newest member's scan time (NOW), not the time of the request
    assert first.updated_at == NOW.isoformat()


def test_verdict_rows_carry_their_origin_and_local_files_join_no_incident(
        engine: Engine) -> None:
    """An upload claiming chalk@5.3.0 is listed as an upload, and is no "chalk is malicious"
    incident; the CLI's incidents (IncidentStore) agree with the read model."""
    from chainwatch.incidents.store import IncidentStore

    at = NOW - timedelta(minutes=5)
    put_verdict(engine, "chalk", "5.3.0", "malicious", at, key="sha512-upload",
                origin="tarball", source="upload", baseline_chosen=True,
                payload={"fingerprints": ["fp-x"], "indicators": {}})
    put_verdict(engine, "debug", "4.4.2", "malicious", at + timedelta(seconds=1),
                key="local:abc", origin="folder", source="/tmp/debug")
    put_verdict(engine, "left-pad", "1.3.1", "malicious", at + timedelta(seconds=2),
                key="sha512-lp", origin="tarball", source="./left-pad-1.3.1.tgz",
                payload={"fingerprints": ["fp-x"], "indicators": {}})
    put_verdict(engine, "nx", "20.9.0", "malicious", at + timedelta(seconds=3),
                origin="registry", source="https://registry.npmjs.org/nx/-/nx-20.9.0.tgz")
    model = ReadModel(engine)
    rows = {r.package: r for r in model.verdicts().items}
    assert (rows["chalk"].origin, rows["chalk"].origin_label) == ("tarball", "upload")
    assert (rows["debug"].origin, rows["debug"].origin_label) == ("folder", "local folder")
    assert rows["left-pad"].origin_label == "local tarball"
    assert (rows["nx"].origin, rows["nx"].origin_label) == ("registry", "registry")
    assert {r.package: r.origin_label for r in model.overview().latest_flagged}["chalk"] == "upload"
    found = model.incidents()
    assert [r.title for r in found] == ["Malicious release of 1 package: nx"]
    cli = IncidentStore(engine=engine).rebuild()
    assert [i.title for i in cli] == [r.title for r in found]
    from chainwatch.incidents.render import render_list

    assert "verdicts of local files, uploads included, join no incident" in render_list([])


def test_a_local_tarball_with_the_registrys_bytes_still_joins_an_incident(
        engine: Engine) -> None:
    """Judged against its registry history (a baseline it did not choose): its sha512 was
    the registry's for that release, so it speaks for it."""
    put_verdict(engine, "chalk", "5.6.1", "malicious", NOW, origin="tarball",
                source="./chalk-5.6.1.tgz", baseline="5.6.0")
    assert [r.title for r in ReadModel(engine).incidents()] == [
        "Malicious release of 1 package: chalk"]


def test_missing_verdict_says_local_scans_are_keyed_by_their_integrity() -> None:
    from chainwatch.serve.queries import missing_verdict

    said = missing_verdict("chalk@5.3.0")
    assert "integrity" in said and "GET /api/v1/verdicts?package=NAME" in said
    assert missing_verdict("sha512-nope") == "no verdict is stored under sha512-nope"
    assert "\n" not in missing_verdict("a@1\n" + "x" * 1000)
