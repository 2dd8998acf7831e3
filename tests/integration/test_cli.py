"""The console script as a user runs it: exit codes, formats, escaping."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.cli_runner import chainwatch, clean_env
from tests.helpers import BENIGN_INDEX, FIXTURES, clipper_source, make_tgz, manifest, write_package
from tests.markdown_oracle import all_visible, headings

EXE = shutil.which("chainwatch") or str(Path(sys.executable).parent / "chainwatch")


def run(*args: str, cache: Path) -> subprocess.CompletedProcess[str]:
    """In this process through the console script's entry point (tests/cli_runner.py);
    test_the_console_script_itself runs the installed script as a real process."""
    return chainwatch(*args, env=clean_env(cache, CHAINWATCH_CACHE_DIR=str(cache),
                                           CHAINWATCH_DATA_DIR=str(cache), COLUMNS="160"))


def test_the_console_script_itself(tmp_path: Path) -> None:
    env = clean_env(tmp_path, COLUMNS="160")
    version = subprocess.run([EXE, "--version"], capture_output=True, text=True, env=env,
                             timeout=60, check=False)
    assert version.returncode == 0 and version.stdout.strip(), version.stderr
    bad = subprocess.run([EXE, "scan"], capture_output=True, text=True, env=env, timeout=60,
                         check=False)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


@pytest.fixture()
def packages(tmp_path: Path) -> dict[str, Path]:
    good = write_package(tmp_path / "good", {"package.json": manifest(version="1.0.1"),
                                             "index.js": BENIGN_INDEX})
    base = write_package(tmp_path / "base", {"package.json": manifest(version="1.0.0"),
                                             "index.js": BENIGN_INDEX})
    bad = tmp_path / "left-padder-1.0.2.tgz"
    bad.write_bytes(make_tgz({"package.json": manifest(version="1.0.2"),
                              "index.js": clipper_source()}))
    return {"good": good, "base": base, "bad": bad}


def test_benign_folder_exits_zero(packages: dict[str, Path], tmp_path: Path) -> None:
    r = run("scan", str(packages["good"]), "--against", str(packages["base"]), cache=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "BENIGN" in r.stdout


def test_malicious_tarball_json_contract(packages: dict[str, Path], tmp_path: Path) -> None:
    r = run("scan", str(packages["bad"]), "--against", str(packages["base"]), "--format", "json",
            cache=tmp_path)
    assert r.returncode == 1, r.stderr
    run_doc = json.loads(r.stdout)
    assert run_doc["schema"] == "chainwatch.scan-run/1" and len(run_doc["results"]) == 1
    doc = run_doc["results"][0]
    assert doc["schema"] == "chainwatch.scan/1"
    assert (doc["package"], doc["version"], doc["baseline"]) == ("left-padder", "1.0.2", "1.0.0")
    assert doc["verdict"] == "malicious" and 70 <= doc["score"] <= 100
    assert {"added", "removed"} <= set(doc["capabilities"])
    assert "browser-hook" in doc["capabilities"]["added"]
    first = doc["findings"][0]
    assert {"rule", "severity", "message", "file", "line", "snippet"} <= set(first)
    assert "metadata_signals" in doc


def test_fail_on_malicious_and_jsonl(packages: dict[str, Path], tmp_path: Path) -> None:
    r = run("scan", str(packages["good"]), str(packages["bad"]), "--against", "none",
            "--format", "jsonl", "--fail-on", "malicious", cache=tmp_path)
    assert r.returncode == 1
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert [x["verdict"] for x in lines] == ["benign", "malicious"]


def test_sarif_output_is_well_formed(packages: dict[str, Path], tmp_path: Path,
                                     sarif_schema: dict[str, Any]) -> None:
    r = run("scan", str(packages["bad"]), "--against", "none", "--format", "sarif", cache=tmp_path)
    doc = json.loads(r.stdout)
    validator = jsonschema.Draft4Validator(sarif_schema)
    validator.validate(doc)
    broken = json.loads(r.stdout)
    broken["runs"][0]["results"][0]["level"] = "fatal"  # not a SARIF level: the schema must say so
    assert not validator.is_valid(broken)
    assert doc["version"] == "2.1.0"
    run0 = doc["runs"][0]
    ids = [rule["id"] for rule in run0["tool"]["driver"]["rules"]]
    assert run0["results"] and all(res["ruleId"] in ids for res in run0["results"])
    for res in run0["results"]:
        assert res["level"] in ("note", "warning", "error")
        assert res["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]


def test_untrusted_text_is_escaped(tmp_path: Path) -> None:
    name = "evil\x1b[31m-pkg|<img src=x onerror=alert(1)>"
    folder = write_package(tmp_path / "evil", {
        "package.json": json.dumps({"name": name, "version": "1.0.0"}),
        "index.js": "const f = window.fetch; window.fetch = function () { return f(); };"
                    " // \x1b]8;;http://x.invalid\x07",
    })
    table = run("scan", str(folder), "--fail-on", "never", cache=tmp_path)
    assert "\x1b" not in table.stdout
    md = run("scan", str(folder), "--format", "markdown", "--fail-on", "never", cache=tmp_path)
    assert "\x1b" not in md.stdout
    # rendered as CommonMark, the name is its own text: no HTML element, no extra table cell
    assert headings(md.stdout)[0].startswith("evil-pkg|<img src=x onerror=alert(1)>@1.0.0")
    assert all_visible(md.stdout)  # raises on raw HTML, links or images
    sarif = run("scan", str(folder), "--format", "sarif", "--fail-on", "never", cache=tmp_path)
    assert "\x1b" not in json.loads(sarif.stdout)["runs"][0]["results"][0]["message"]["text"]


def test_packument_fixture_gives_metadata_offline(tmp_path: Path) -> None:
    tgz = tmp_path / "left-padder-1.0.2.tgz"
    tgz.write_bytes(make_tgz({"package.json": manifest(version="1.0.2"), "index.js": BENIGN_INDEX}))
    r = run("scan", str(tgz), "--packument", str(FIXTURES / "packuments" / "left-padder.full.json"),
            "--format", "json", "--offline", cache=tmp_path)
    (doc,) = json.loads(r.stdout)["results"]
    signals = {s["rule"] for s in doc["metadata_signals"]}
    assert "CW-META-NEW-PUBLISHER" in signals and "CW-META-PROVENANCE-LOST" in signals
    assert doc["verdict"] == "suspicious" and r.returncode == 1


def test_bad_usage_and_unknown_version_exit_two(tmp_path: Path) -> None:
    assert run("scan", str(tmp_path / "missing.tgz"), cache=tmp_path).returncode == 2
    r = run("scan", "left-padder@9.9.9", "--packument",
            str(FIXTURES / "packuments" / "left-padder.full.json"), "--offline", cache=tmp_path)
    assert r.returncode == 2 and "no such version" in r.stderr


def test_registry_down_exits_three(tmp_path: Path) -> None:
    r = run("scan", "left-padder@1.0.0", "--registry", "http://127.0.0.1:9/", cache=tmp_path)
    assert r.returncode == 3 and "registry" in r.stderr


def test_offline_cache_miss_exits_three(tmp_path: Path) -> None:
    r = run("scan", "left-padder@1.0.0", "--offline", cache=tmp_path)
    assert r.returncode == 3 and "--offline" in r.stderr


def test_rules_list(tmp_path: Path) -> None:
    r = run("rules", "list", cache=tmp_path)
    assert r.returncode == 0 and "CW-BROWSER-FETCH-HOOK" in r.stdout


def test_inventory_and_exposure_through_the_cli(tmp_path: Path) -> None:
    project = tmp_path / "repo"
    project.mkdir()
    (project / "package-lock.json").write_text(json.dumps({
        "name": "app", "lockfileVersion": 3, "packages": {
            "": {"name": "app", "dependencies": {"a": "^1.0.0"}},
            "node_modules/a": {"version": "1.0.0", "dependencies": {"debug": "^4.4.0"}},
            "node_modules/debug": {"version": "4.4.2"}}}))
    inv = run("inventory", str(project), "--format", "json", cache=tmp_path)
    assert inv.returncode == 0, inv.stderr
    doc = json.loads(inv.stdout)
    assert doc["schema"] == "chainwatch.inventory/1"
    env = doc["environments"][0]
    assert {"id", "kind", "source", "packages"} <= set(env) and env["kind"] == "package-lock"
    debug = next(p for p in env["packages"] if p["name"] == "debug")
    assert debug["paths"] == [["app", "a", "debug"]] and debug["dev"] is False
    exp = run("exposure", str(project), "--format", "json", cache=tmp_path)
    assert exp.returncode == 1
    hit = json.loads(exp.stdout)["environments"][0]["hits"][0]
    assert hit == {"name": "debug", "version": "4.4.2", "advisories": ["CW-2025-QIX"],
                   "dev": False, "paths": [["app", "a", "debug"]], "paths_cut": False}
    table = run("exposure", str(project), cache=tmp_path)
    assert "debug@4.4.2" in table.stdout and "app > a > debug" in table.stdout
    clean = tmp_path / "clean"
    clean.mkdir()
    (clean / "package.json").write_text(json.dumps({"name": "c", "dependencies": {"ms": "^2"}}))
    assert run("exposure", str(clean), cache=tmp_path).returncode == 0
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "package-lock.json").write_text("{not json")
    bad = run("inventory", str(broken), cache=tmp_path)
    assert bad.returncode == 2 and "not valid JSON" in bad.stderr


def test_db_import_then_exposure_uses_it(tmp_path: Path) -> None:
    osv = tmp_path / "osv" / "malicious" / "npm" / "left-padder"
    osv.mkdir(parents=True)
    (osv / "MAL-2099-1.json").write_text(json.dumps({
        "id": "MAL-2099-1", "summary": "Malicious code in left-padder (npm)",
        "affected": [{"package": {"ecosystem": "npm", "name": "left-padder"},
                      "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}]}]}]}))
    (osv / "broken.json").write_text("{")
    db = f"sqlite:///{tmp_path / 'kb.db'}"
    imported = run("db", "import", str(tmp_path / "osv"), "--db", db, cache=tmp_path)
    assert imported.returncode == 0, imported.stderr
    assert "imported 1" in imported.stdout and "broken.json" in imported.stderr
    project = tmp_path / "p"
    project.mkdir()
    (project / "package.json").write_text(json.dumps({"name": "p", "dependencies": {"left-padder": "1.0.0"}}))
    exp = run("exposure", str(project), "--db", db, "--format", "json", cache=tmp_path)
    assert exp.returncode == 1
    assert json.loads(exp.stdout)["environments"][0]["hits"][0]["advisories"] == ["MAL-2099-1"]
    scan = run("scan", str(packages_dir(tmp_path)), "--db", db, "--format", "json", cache=tmp_path)
    assert json.loads(scan.stdout)["results"][0]["verdict"] == "malicious"


def packages_dir(tmp_path: Path) -> Path:
    return write_package(tmp_path / "lp", {"package.json": manifest(version="1.0.0"),
                                           "index.js": BENIGN_INDEX})


def test_fleet_memory_record_then_query(tmp_path: Path) -> None:
    project = tmp_path / "svc"
    project.mkdir()
    (project / "package.json").write_text(json.dumps({"name": "svc", "dependencies": {"debug": "4.4.2"}}))
    db = f"sqlite:///{tmp_path / 'fleet.db'}"
    rec = run("inventory", str(project), "--record", "svc@1a2b3c", "--db", db, cache=tmp_path)
    assert rec.returncode == 0 and "recorded 1 environment (" in rec.stderr
    q = run("exposure", "--query", "debug@4.4.2", "--db", db, "--format", "json", cache=tmp_path)
    assert q.returncode == 1
    sightings = json.loads(q.stdout)["sightings"]
    assert [s["label"] for s in sightings] == ["svc@1a2b3c"]
    none = run("exposure", "--query", "debug@4.4.3", "--db", db, cache=tmp_path)
    assert none.returncode == 0 and "no recorded environment held it" in none.stdout
    assert run("exposure", "--db", db, cache=tmp_path).returncode == 2


def test_a_local_tarball_is_not_remembered_for_a_release_it_only_claims(
        packages: dict[str, Path], tmp_path: Path) -> None:
    # its package.json says left-padder@1.0.2, but no registry confirms those bytes: the
    # verdict is kept for its own bytes, never as a known-bad record of the registry release
    # (tests/hostile/test_verdicts_poisoning.py has the registry-confirmed case)
    db = f"sqlite:///{tmp_path / 'kb.db'}"
    r = run("scan", str(packages["bad"]), "--against", str(packages["base"]), "--db", db,
            "--registry", "http://127.0.0.1:9/", cache=tmp_path)
    assert r.returncode == 1 and "not recorded as known-bad" in r.stderr
    assert "remembered" not in r.stderr
    project = tmp_path / "uses"
    project.mkdir()
    (project / "package.json").write_text(json.dumps({"name": "u", "dependencies": {"left-padder": "1.0.2"}}))
    exp = run("exposure", str(project), "--db", db, "--format", "json", cache=tmp_path)
    assert exp.returncode == 0
    assert json.loads(exp.stdout)["environments"][0]["hits"] == []
    again = run("scan", str(packages["bad"]), "--no-remember", "--db", f"sqlite:///{tmp_path / 'x.db'}",
                cache=tmp_path)
    assert "remembered" not in again.stderr and "known-bad" not in again.stderr


def test_policy_show_and_check(tmp_path: Path) -> None:
    shown = run("policy", "show", "--min-age", "7d", cache=tmp_path)
    assert shown.returncode == 0 and 'duration = "1w"' in shown.stdout
    project = tmp_path / "ci"
    project.mkdir()
    (project / "package-lock.json").write_text(json.dumps({
        "name": "app", "lockfileVersion": 3, "packages": {
            "": {"name": "app", "dependencies": {"debug": "^4.4.0"}},
            "node_modules/debug": {"version": "4.4.2"}}}))
    down = ["--offline"]  # no registry metadata: known-bad still blocks, the rest blocks too
    r = run("check", str(project), *down, "--format", "json", cache=tmp_path)
    assert r.returncode == 1, r.stderr
    doc = json.loads(r.stdout)
    assert doc["schema"] == "chainwatch.check/1" and doc["summary"]["blocked"] == 1
    rules = {(d["rule"], d["action"]) for d in doc["decisions"]}
    # the blocked known-bad version gets no "registry metadata unavailable" noise beside it
    assert rules == {("known-bad", "block")}
    gh = run("check", str(project), *down, "--format", "github", cache=tmp_path)
    assert gh.stdout.startswith("::error file=") and "known-bad" in gh.stdout
    policy = tmp_path / "p.toml"
    policy.write_text("[known-bad]\naction = 'warn'\n")
    # the registry could not be asked: fail closed unless the policy opts into warnings
    assert run("check", str(project), *down, "--policy", str(policy), cache=tmp_path).returncode == 1
    policy.write_text("offline = 'warn'\n[known-bad]\naction = 'warn'\n")
    assert run("check", str(project), *down, "--policy", str(policy), cache=tmp_path).returncode == 0
    policy.write_text("[known-bad]\naction = 'sometimes'\n")
    assert run("check", str(project), "--policy", str(policy), cache=tmp_path).returncode == 2


def test_report_and_incidents_from_scans(tmp_path: Path, packages: dict[str, Path]) -> None:
    scanned = run("scan", str(packages["bad"]), "--against", str(packages["base"]),
                  "--format", "json", "--no-remember", cache=tmp_path)
    assert scanned.returncode == 1
    (tmp_path / "scan.json").write_text(scanned.stdout)
    brief = run("report", str(tmp_path / "scan.json"), cache=tmp_path)
    assert brief.returncode == 0, brief.stderr
    assert "## 1. Bottom line up front" in brief.stdout and "## 9. Thematic tags" in brief.stdout
    page = tmp_path / "brief.html"
    assert run("report", str(tmp_path / "scan.json"), "--format", "html", "-o",
               str(page), cache=tmp_path).returncode == 0
    assert page.read_text().startswith("<!doctype html>")
    stix = run("report", str(tmp_path / "scan.json"), "--format", "stix",
               cache=tmp_path)
    assert json.loads(stix.stdout)["type"] == "bundle"
    sarif = run("report", str(tmp_path / "scan.json"), "--format", "sarif",
                cache=tmp_path)
    assert json.loads(sarif.stdout)["runs"][0]["results"]
    out = tmp_path / "osv"
    exported = run("report", str(tmp_path / "scan.json"), "--format", "osv", "-o",
                   str(out), cache=tmp_path)
    # local files say nothing about the registry's release: no advisory vouches for them
    assert exported.returncode == 0 and "not exported" in exported.stderr
    assert list(out.glob("*.json")) == []
    db = f"sqlite:///{tmp_path / 'kb.db'}"
    # from the database: a remembered verdict of local files is no incident (its package.json's
    # name@version is only a claim) ...
    assert run("scan", str(packages["bad"]), "--against", str(packages["base"]), "--db", db,
               cache=tmp_path).returncode == 1
    local = run("incidents", "--db", db, cache=tmp_path)
    assert local.returncode == 0 and "local files, uploads included, join no incident" in (
        local.stdout)
    # ... a registry release's is (stored as the watcher or `scan name@version` would)
    from sqlalchemy import select, update

    from chainwatch.db import connect
    from chainwatch.verdicts import verdicts

    engine = connect(db)
    with engine.begin() as conn:
        key, text = conn.execute(select(verdicts.c.key, verdicts.c.document)).one()
        doc = {**json.loads(text), "origin": "registry"}
        conn.execute(update(verdicts).where(verdicts.c.key == key)
                     .values(document=json.dumps(doc)))
    engine.dispose()
    listed = run("incidents", "--db", db, "--format", "json", cache=tmp_path)
    (incident,) = json.loads(listed.stdout)["incidents"]
    assert incident["level"] == "malicious"
    by_id = run("report", "--incident", incident["id"], "--db", db, "--format", "json",
                cache=tmp_path)
    assert json.loads(by_id.stdout)["incident"] == incident["id"]
    missing = run("report", "--incident", "INC-nope", "--db", db, cache=tmp_path)
    assert missing.returncode == 2 and incident["id"] in missing.stderr
