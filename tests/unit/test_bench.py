"""The benchmark's own logic: replica injection and the figures it reports (no network)."""

from __future__ import annotations

import json
from pathlib import Path

from bench.corpus.replica import SPECS, bump_patch, inject, load, main_file, wallet_table
from bench.detect import Item, rates, report, wrap_tgz

from chainwatch.archive import read_tarball
from chainwatch.scan import Scanner

HOST = {"package.json": json.dumps({"name": "h", "version": "2.3.4", "main": "lib/main",
                                    "scripts": {"test": "x"}}).encode(),
        "lib/main.js": b"module.exports = 1;\n"}


def test_inject_appends_to_the_entry_file_and_bumps_a_patch() -> None:
    out = inject(HOST, load(SPECS / "qix.yml"))
    manifest = json.loads(out["package.json"])
    assert manifest["version"] == "2.3.5" and manifest["scripts"] == {"test": "x"}
    assert out["lib/main.js"].startswith(b"module.exports = 1;\n")
    assert b"window.ethereum.request" in out["lib/main.js"] and b"%WALLETS%" not in out["lib/main.js"]


def test_inject_merges_scripts_and_adds_files() -> None:
    out = inject(HOST, load(SPECS / "shai-hulud.yml"))
    manifest = json.loads(out["package.json"])
    assert manifest["scripts"] == {"test": "x", "postinstall": "node bundle.js"}
    assert "bundle.js" in out


def test_transform_applies_only_to_listed_parts() -> None:
    out = inject(HOST, load(SPECS / "qix.yml"), lambda part, code: "/*obfuscated*/")
    assert out["lib/main.js"].endswith(b"/*obfuscated*/")


def test_helpers() -> None:
    assert bump_patch("1.2.3-beta.1") == "1.2.4" and bump_patch("7") == "7.0.1"
    assert main_file({"main": "./index"}) == "index.js" and main_file({}) == "index.js"
    table = wallet_table({"eth": 3, "btc": 2, "bech32": 1, "trx": 1, "ltc": 1})
    assert table.count("'") == 16 and len(set(table.split(","))) == 8


def test_wrap_tgz_is_a_package_both_tools_can_read() -> None:
    files = read_tarball(wrap_tgz("payload", b"eval(x)"))
    assert {f.path for f in files.files} == {"package.json", "index.js"}


def test_rates_and_report() -> None:
    def item(group: str, level: str, label: dict[str, object] | None = None) -> Item:
        it = Item(id=f"{group}-{level}", group=group, label=label or {}, js_bytes=2_000_000,
                  unpacked=3_000_000, spec="x@1")
        it.result["chainwatch"] = {"level": level, "seconds": 0.1, "top_technique": "dropper",
                                   "top_rule": "R"}
        return it

    items = [item("replica", "malicious", {"incident": "A", "techniques": ["dropper"],
                                           "top_technique": ["dropper"]}),
             item("sample", "suspicious"), item("top", "benign"), item("top", "suspicious")]
    assert rates(items[2:], "chainwatch") == {"n": 2, "flagged": 0.5, "malicious": 0.0,
                                              "suspicious": 0.5, "errors": 0, "flagged_n": 1,
                                              "malicious_n": 0, "suspicious_n": 1}
    rep = report(items, ["chainwatch"], {})
    assert rep["sets"]["malicious (replicas + samples)"]["chainwatch"]["flagged"] == 1.0
    assert rep["right_technique_on_top"] == 1.0
    assert rep["speed"]["chainwatch"]["mb_per_s"] == 4_000_000 / 1e6 / 0.2
    assert [r["id"] for r in rep["false_alarms"]] == ["top-suspicious"]
    assert not rep["misses"]


def test_scanner_accepts_an_empty_known_bad_source() -> None:
    from bench.detect import NoKnownBad

    assert Scanner(None, workers=1, known_bad=NoKnownBad()).known_bad.lookup("debug", "4.4.2") == []


def test_a_failed_peer_scan_is_counted_apart_and_the_table_shows_it(tmp_path: Path) -> None:
    from bench.detect import markdown_table, run_guarddog

    exe = tmp_path / "guarddog"
    exe.write_text("#!/bin/sh\necho 'not json'\n")
    exe.chmod(0o755)
    top = Item(id="x@1", group="top")
    top.result["chainwatch"] = {"level": "benign", "seconds": 0.1, "top_technique": None,
                                "top_rule": None}
    run_guarddog(exe, top, b"bytes", tmp_path, {}, timeout=30)
    assert top.result["guarddog"]["level"] == "error"  # never benign
    assert rates([top], "guarddog")["n"] == 0 and rates([top], "guarddog")["errors"] == 1
    rep = report([top], ["chainwatch", "guarddog"], {})
    table = markdown_table(rep, 1)
    assert "| top 1 latest, standalone: suspicious | 0.0% (0/1) | – |" in table
