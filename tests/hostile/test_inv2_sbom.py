"""An SBOM named on the command line is recognised by content, whatever it is called (issue 12 A 8).

Before: ``chainwatch inventory export.json`` (a CycloneDX SBOM by another name) was exit 2 "not a
lockfile, manifest, SBOM…". Now ``bomFormat`` / ``spdxVersion`` decide.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chainwatch.inventory.walk import FileError, walk
from chainwatch.model import Environment

CDX = {"bomFormat": "CycloneDX", "specVersion": "1.6", "version": 1,
       "components": [{"type": "library", "name": "debug", "version": "4.4.2",
                       "purl": "pkg:npm/debug@4.4.2"}]}
SPDX = {"spdxVersion": "SPDX-2.3", "name": "app", "packages": [
    {"SPDXID": "SPDXRef-1", "name": "debug", "externalRefs": [
        {"referenceType": "purl", "referenceLocator": "pkg:npm/debug@4.4.2"}]}]}


@pytest.mark.parametrize(("name", "doc"), [("export.json", CDX), ("deps", SPDX),
                                           ("report.txt", CDX)])
def test_sbom_by_content(tmp_path: Path, name: str, doc: dict[str, object]) -> None:
    (tmp_path / name).write_text(json.dumps(doc))
    found = list(walk([tmp_path / name]))
    assert not [f for f in found if isinstance(f, FileError)]
    envs = [e for e in found if isinstance(e, Environment)]
    assert [(p.name, p.version) for e in envs for p in e.packages] == [("debug", "4.4.2")]


def test_other_json_is_still_an_error(tmp_path: Path) -> None:
    (tmp_path / "export.json").write_text(json.dumps({"name": "bomFormat"}))
    found = list(walk([tmp_path / "export.json"]))
    assert len(found) == 1 and isinstance(found[0], FileError)
