"""Incidents from the replica corpus: grouping, the ACH ranking, the brief and its exports."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from bench.corpus.replica import Spec, inject, specs

from chainwatch.incidents import osv, stix
from chainwatch.incidents.ach import assess
from chainwatch.incidents.brief import build
from chainwatch.incidents.cluster import cluster
from chainwatch.incidents.model import Observation
from chainwatch.incidents.render import render_html, render_markdown
from chainwatch.intel.store import KnownBadStore, parse_osv, read_osv
from chainwatch.model import PackageRef
from chainwatch.output.jsonout import verdict_dict
from chainwatch.packument import release_from_packument
from chainwatch.scan import Loaded, Scanner, scan_snippet_files
from tests.helpers import BENIGN_INDEX, FIXTURES, manifest
from tests.markdown_oracle import all_visible

SCANNER = Scanner(None, workers=1)
SPECS = {s.name: s for s in specs()}
T0 = datetime(2025, 9, 8, 13, 16, tzinfo=UTC)


def _packument(name: str, publisher: str, when: datetime) -> dict[str, Any]:
    def version(v: str) -> dict[str, Any]:
        return {"name": name, "version": v, "_npmUser": {"name": publisher,
                                                          "email": f"{publisher}@x.invalid"},
                "dist": {"tarball": f"https://registry.invalid/{name}/-/{name}-{v}.tgz",
                         "integrity": "sha512-" + "QUFB" * 21 + "QQ=="}}
    return {"name": name, "dist-tags": {"latest": "1.0.1"},
            "time": {"1.0.0": (when - timedelta(days=200)).isoformat(),
                     "1.0.1": when.isoformat()},
            "versions": {"1.0.0": version("1.0.0"), "1.0.1": version("1.0.1")}}


def flagged(name: str, spec: Spec, publisher: str, when: datetime) -> Observation:
    """A replica injected into a host package named ``name``, scanned against the clean one."""
    doc = _packument(name, publisher, when)
    host = {"package.json": manifest(name=name, version="1.0.0").encode(),
            "index.js": BENIGN_INDEX.encode()}
    bad = inject(host, spec)
    bad["package.json"] = json.dumps({**json.loads(bad["package.json"]),
                                      "version": "1.0.1"}).encode()

    def loaded(version: str, files: dict[str, bytes]) -> Loaded:
        return Loaded(PackageRef(name, version), scan_snippet_files(files),
                      release_from_packument(doc, version), doc)

    verdict = SCANNER.analyze(loaded("1.0.1", bad), loaded("1.0.0", host))
    assert verdict.level.value == "malicious"
    return Observation.from_scan(verdict_dict(verdict), detected_at=(
        when + timedelta(minutes=5)).isoformat())


def qix_wave() -> list[Observation]:
    names = ["color-tint", "size-tint", "ansi-tint", "flag-tint"]
    return [flagged(n, SPECS["qix"], "qix", T0 + timedelta(minutes=9 * i))
            for i, n in enumerate(names)]


def worm_wave() -> list[Observation]:
    # Shai-Hulud spreads through many accounts: the shared payload is what links them
    return [flagged(n, SPECS["shai-hulud"], f"victim-{i}", T0 + timedelta(hours=30 + 3 * i))
            for i, n in enumerate(["tiny-queue", "tiny-lru", "tiny-emit"])]


def maintainer_change() -> Observation:
    doc = json.loads((FIXTURES / "packuments" / "left-padder.full.json").read_text())

    def loaded(v: str, code: str) -> Loaded:
        return Loaded(PackageRef("left-padder", v), scan_snippet_files(
            {"package.json": manifest(version=v), "index.js": code}),
            release_from_packument(doc, v), doc)

    verdict = SCANNER.analyze(loaded("1.0.2", BENIGN_INDEX + "\n// docs\n"),
                              loaded("1.0.1", BENIGN_INDEX))
    assert verdict.level.value == "suspicious"
    return Observation.from_scan(verdict_dict(verdict))


def test_a_qix_like_wave_is_one_incident_ranked_account_takeover() -> None:
    (incident,) = cluster(qix_wave())
    assert len(incident.packages) == 4 and incident.publishers == ["qix"]
    assessment = assess(incident)
    assert assessment.best.hypothesis == "H1", assessment.ranking
    assert assessment.confidence in ("moderate", "high")


def test_a_worm_across_accounts_is_one_incident_ranked_worm() -> None:
    (incident,) = cluster(worm_wave())  # three accounts, three days' hours apart: the payload
    assert len(incident.publishers) == 3
    assert assess(incident).best.hypothesis == "H2", assess(incident).ranking


def test_a_benign_maintainer_change_ranks_false_positive_first() -> None:
    (incident,) = cluster([maintainer_change()])
    assert assess(incident).best.hypothesis == "H5", assess(incident).ranking


def test_unrelated_releases_stay_apart() -> None:
    found = cluster([*qix_wave(), *worm_wave(), maintainer_change()])
    assert sorted(len(i.members) for i in found) == [1, 3, 4]
    # the same account hours apart, with nothing else shared, is two incidents
    a = Observation("a-pkg", "1.0.1", "suspicious", "verdict", publisher="bob",
                    published=T0.isoformat())
    b = Observation("b-pkg", "2.0.1", "suspicious", "verdict", publisher="bob",
                    published=(T0 + timedelta(hours=5)).isoformat())
    c = Observation("c-pkg", "1.0.0", "suspicious", "verdict", publisher="carol",
                    indicators={"urls": ["https://collector.example.invalid/x"]})
    d = Observation("d-pkg", "1.0.0", "suspicious", "verdict", publisher="dave",
                    indicators={"urls": ["https://collector.example.invalid/x"]})
    e = Observation("e-pkg", "1.0.0", "suspicious", "verdict", publisher="erin",
                    indicators={"hosts": ["pastebin.com"]})
    f = Observation("f-pkg", "1.0.0", "suspicious", "verdict", publisher="fay",
                    indicators={"hosts": ["pastebin.com"]})
    assert sorted(len(i.members) for i in cluster([a, b, c, d, e, f])) == [1, 1, 1, 1, 2]


def test_the_ids_are_stable_as_members_join() -> None:
    wave = qix_wave()
    assert cluster(wave[:2])[0].id == cluster(wave)[0].id


def test_the_brief_has_every_section_and_traces_its_statements() -> None:
    (incident,) = cluster(qix_wave())
    exposure = [{"label": "web@abc123", "package": "color-tint", "version": "1.0.1",
                 "recorded_at": "2025-09-08T14:02:00+00:00"}]
    brief = build(incident, exposure, fleet_total=12)
    assert brief["bluf"]["refs"] and "account takeover" in brief["bluf"]["text"]
    assert brief["implications"][0]["text"].startswith("1 of 12 recorded environments")
    assert "2025-09-08T14:02:00" in brief["implications"][0]["text"]
    for section in ("assumptions", "red_flags", "bias_check", "implications",
                    "recommendations"):
        assert all(item["refs"] for item in brief[section]), section
    assert all(e["refs"] for e in brief["hypotheses"]["evidence"])
    assert {"best", "worst", "most_likely"} == set(brief["scenarios"])
    assert brief["entities"]["accounts"] == ["qix"] and brief["indicators"]["wallets"]
    assert [e["time"] for e in brief["timeline"]] == sorted(e["time"] for e in brief["timeline"])
    assert "crypto-theft" in brief["tags"]
    text = render_markdown(brief)
    assert [n for n in range(1, 10) if f"## {n}. " in text] == list(range(1, 10))


def test_html_is_escaped_and_self_contained() -> None:
    obs = Observation("evil-pkg", "1.0.0", "malicious", "verdict", publisher="<img src=x>",
                      explanation="<script>alert(1)</script>",
                      findings=({"rule": "R", "technique": "sabotage", "severity": "high",
                                 "message": "<b>x</b>", "file": "a.js", "line": 1},),
                      indicators={"urls": ["https://x.invalid/<script>"]})
    (incident,) = cluster([obs])
    page = render_html(build(incident))
    assert "<script>" not in page and "<img" not in page and "&lt;script&gt;" in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "<link" not in page and "@import" not in page
    md = render_markdown(build(incident))
    seen = all_visible(md)  # raises on raw HTML, links or images; code spans are inert
    assert "https://x.invalid/<script>" in seen and "by <img src=x>" in seen


def test_osv_export_reads_back_into_the_known_bad_store(tmp_path: Path) -> None:
    (incident,) = cluster(qix_wave())
    folder = tmp_path / "osv"
    folder.mkdir()
    for record in osv.records(incident):
        assert record["id"].startswith("MAL-0000-")
        assert record["database_specific"]["iocs"]["wallets"]
        (folder / f"{record['id']}.json").write_text(json.dumps(record))
    store = KnownBadStore(f"sqlite:///{tmp_path / 'kb.db'}")
    parsed = [parse_osv(doc, "osv") for _, doc, _ in read_osv([folder]) if doc]
    assert store.import_records([p for p in parsed if p is not None]) == 4
    assert [a.id for a in store.lookup("size-tint", "1.0.1")] == [
        osv.osv_id(incident.members[1])]
    assert store.lookup("size-tint", "1.0.0") == []


@pytest.mark.parametrize("wave", [qix_wave, worm_wave])
def test_stix_bundle_passes_the_validator(wave: Any) -> None:
    stix2validator = pytest.importorskip("stix2validator")
    (incident,) = cluster(wave())
    text = stix.bundle(incident, assess(incident).best.hypothesis,
                       now=datetime(2025, 9, 8, 16, 0, tzinfo=UTC))
    result = stix2validator.validate_string(text, stix2validator.ValidationOptions(
        version="2.1", strict=True))
    assert result.is_valid, [str(e) for e in result.errors]
    doc = json.loads(text)
    kinds = {o["type"] for o in doc["objects"]}
    assert {"malware", "indicator", "relationship", "identity"} <= kinds
    assert text == stix.bundle(incident, assess(incident).best.hypothesis,
                               now=datetime(2025, 9, 8, 16, 0, tzinfo=UTC))  # deterministic


def test_known_bad_versions_the_fleet_held_become_one_incident(tmp_path: Path) -> None:
    from chainwatch.fleet import Fleet
    from chainwatch.incidents.store import IncidentStore
    from chainwatch.intel import BuiltinKnownBad
    from chainwatch.model import Environment, InstalledPackage

    url = f"sqlite:///{tmp_path / 'f.db'}"
    held = [InstalledPackage(n, v, paths=((n,),)) for n, v in
            (("chalk", "5.6.1"), ("debug", "4.4.2"), ("lodash", "4.17.21"))]
    Fleet(url).record("web@abc123", [Environment("app", "package-lock.json",
                                                 "app/package-lock.json",
                                                 tuple(held))])
    store = IncidentStore(url)
    (incident,) = store.rebuild(BuiltinKnownBad())
    assert [m.key for m in incident.members] == ["chalk@5.6.1", "debug@4.4.2"]
    assert incident.members[0].advisories == ("CW-2025-QIX",)
    assert store.listed()[0]["members"] == ["chalk@5.6.1", "debug@4.4.2"]
    assert assess(incident).best.hypothesis != "H5"  # an advisory is against a false positive


def test_a_suspicious_verdict_is_exported_as_suspicious_and_not_imported_as_known_bad(
        tmp_path: Path) -> None:
    """OSV and STIX wording follow the verdict; `db import` skips chainwatch's export of a
    suspicious verdict and says so (--include-suspicious imports it); `db remove` takes an
    imported advisory out again, and `db verdicts remove` points at it."""
    import dataclasses

    from typer.testing import CliRunner

    from chainwatch.cli import app

    (incident,) = cluster([dataclasses.replace(o, level="suspicious") for o in qix_wave()])
    folder = tmp_path / "osv"
    folder.mkdir()
    for record in osv.records(incident):
        assert record["summary"].startswith("Suspicious code in "), record["summary"]
        (folder / f"{record['id']}.json").write_text(json.dumps(record))
    text = stix.bundle(incident, "", now=datetime(2025, 9, 8, 16, 0, tzinfo=UTC))
    assert "Malicious" not in text and "malicious-activity" not in text
    db = f"sqlite:///{tmp_path / 'kb.db'}"
    runner = CliRunner()
    result = runner.invoke(app, ["db", "import", str(folder), "--db", db])
    assert result.exit_code == 0, result.output
    assert "skipped 4 records exported from a *suspicious* chainwatch verdict" in result.output
    assert KnownBadStore(db).lookup("size-tint", "1.0.1") == []
    result = runner.invoke(app, ["db", "import", str(folder), "--db", db, "--include-suspicious"])
    assert result.exit_code == 0 and "imported 4 npm advisories" in result.output
    rid = osv.osv_id(incident.members[1])
    assert [a.id for a in KnownBadStore(db).lookup("size-tint", "1.0.1")] == [rid]
    result = runner.invoke(app, ["db", "verdicts", "remove", "size-tint@1.0.1", "--db", db,
                                 "--reason", "suspicious only"])
    assert result.exit_code == 2 and rid in result.output and "db remove" in result.output
    result = runner.invoke(app, ["db", "remove", rid, "--db", db, "--reason", "suspicious only"])
    assert result.exit_code == 0, result.output
    assert "size-tint@1.0.1" in result.output
    assert KnownBadStore(db).lookup("size-tint", "1.0.1") == []
    result = runner.invoke(app, ["db", "remove", rid, "--db", db, "--reason", "again"])
    assert result.exit_code == 2 and "no advisory" in result.output
