from __future__ import annotations

import json
import zipfile
from pathlib import Path

from chainwatch.intel import BuiltinKnownBad
from chainwatch.intel.store import CombinedKnownBad, KnownBadStore, parse_osv, read_osv


def record(rid: str, name: str, **affected: object) -> dict[str, object]:
    return {"id": rid, "summary": f"{rid} summary", "aliases": ["GHSA-x"],
            "references": [{"type": "WEB", "url": "https://example.invalid/a"}],
            "affected": [{"package": {"ecosystem": "npm", "name": name}, **affected}]}


def test_versions_ranges_and_withdrawn(tmp_path: Path) -> None:
    store = KnownBadStore(f"sqlite:///{tmp_path / 'kb.db'}")
    docs = [
        record("MAL-1", "evil", ranges=[{"type": "SEMVER", "events": [{"introduced": "0"}]}]),
        record("MAL-2", "@s/pkg", versions=["1.2.3", "1.2.4"]),
        record("GHSA-3", "lib", ranges=[{"type": "SEMVER", "events": [
            {"introduced": "2.0.0"}, {"fixed": "2.1.0"}, {"introduced": "3.0.0"},
            {"last_affected": "3.0.5"}]}]),
        {**record("MAL-4", "gone", versions=["1.0.0"]), "withdrawn": "2025-01-01T00:00:00Z"},
        {"id": "PYSEC-1", "affected": [{"package": {"ecosystem": "PyPI", "name": "x"}}]},
    ]
    parsed = [r for d in docs if (r := parse_osv(d, "osv")) is not None]
    assert len(parsed) == 4
    assert store.import_records(parsed) == 4
    assert [a.id for a in store.lookup("evil", "9.9.9")] == ["MAL-1"]
    assert [a.id for a in store.lookup("@s/pkg", "1.2.4")] == ["MAL-2"]
    assert store.lookup("@s/pkg", "1.2.5") == []
    assert [a.id for a in store.lookup("lib", "2.0.7")] == ["GHSA-3"]
    assert store.lookup("lib", "2.1.0") == [] and store.lookup("lib", "1.9.0") == []
    assert [a.id for a in store.lookup("lib", "3.0.5")] == ["GHSA-3"]
    assert store.lookup("lib", "3.0.6") == []
    assert store.lookup("gone", "1.0.0") == []
    advisory = store.lookup("evil", "1.0.0")[0]
    assert advisory.aliases == ("GHSA-x",) and advisory.references == ("https://example.invalid/a",)
    # a re-import replaces, never duplicates
    store.import_records(parsed)
    assert store.count() == 4 and len(store.lookup("@s/pkg", "1.2.3")) == 1
    combined = CombinedKnownBad(store, BuiltinKnownBad())
    assert {a.id for a in combined.lookup("debug", "4.4.2")} == {"CW-2025-QIX"}


def test_read_osv_from_zip_tree_and_files(tmp_path: Path) -> None:
    zpath = tmp_path / "all.zip"
    with zipfile.ZipFile(zpath, "w") as z:
        z.writestr("MAL-1.json", json.dumps(record("MAL-1", "a", versions=["1.0.0"])))
        z.writestr("bad.json", "{")
    tree = tmp_path / "osv" / "malicious" / "npm" / "b"
    tree.mkdir(parents=True)
    (tree / "MAL-2.json").write_text(json.dumps(record("MAL-2", "b", versions=["1.0.0"])))
    single = tmp_path / "MAL-3.json"
    single.write_text(json.dumps(record("MAL-3", "c", versions=["1.0.0"])))
    out = list(read_osv([zpath, tmp_path / "osv", single, tmp_path / "missing.json"]))
    ok = sorted(doc["id"] for _, doc, err in out if doc is not None)
    errors = [err for _, doc, err in out if err]
    assert ok == ["MAL-1", "MAL-2", "MAL-3"] and len(errors) == 2
