from __future__ import annotations

import json

from chainwatch.intel import BuiltinKnownBad
from chainwatch.model import Level, PackageRef
from chainwatch.scan import Loaded, Scanner, scan_snippet_files
from tests.helpers import BENIGN_INDEX


def test_builtin_list_has_the_2025_compromises() -> None:
    kb = BuiltinKnownBad()
    assert kb.lookup("chalk", "5.6.1")[0].id == "CW-2025-QIX"
    assert kb.lookup("@duckdb/duckdb-wasm", "1.29.2")[0].id == "CW-2025-DUCKDB"
    assert kb.lookup("nx", "21.5.0")[0].id == "CW-2025-NX-S1NGULARITY"
    assert kb.lookup("@ctrl/tinycolor", "4.1.2")[0].id == "CW-2025-SHAI-HULUD"
    assert kb.lookup("chalk", "5.6.2") == []
    debug = kb.lookup("debug", "4.4.2")
    assert debug and all(a.references for a in debug)


def test_known_bad_version_is_malicious_even_when_its_code_looks_clean() -> None:
    files = scan_snippet_files({
        "package.json": json.dumps({"name": "debug", "version": "4.4.2"}),
        "index.js": BENIGN_INDEX})
    v = Scanner(None, workers=1).analyze(Loaded(PackageRef("debug", "4.4.2"), files), None)
    assert v.level is Level.MALICIOUS
    assert v.findings[0].rule == "CW-KNOWN-BAD" and "CW-2025-QIX" in v.findings[0].message
