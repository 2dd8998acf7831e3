"""Issue 14: reading files in windows changes no finding.

Every replica (plain and hand-obfuscated, diffed against its host and alone) and every real
sample is judged twice without any result cache: with the window threshold of the windowed
detectors (browser_hook) at 0, so every file is read in windows around its needles, and with
it out of reach, so every file is parsed whole. Finding for finding, the two must agree, and
the windowed pass must really have used windows.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable
from dataclasses import replace

import pytest
from bench.corpus.replica import inject, obfuscated, specs

from chainwatch.analysis import engine, hooks
from chainwatch.archive import read_tarball
from chainwatch.model import PackageFile, PackageFiles, PackageRef, Verdict
from chainwatch.scan import Loaded, Scanner, scan_snippet_files
from tests.helpers import BENIGN_INDEX, SAMPLES_ZIP, missing_part

HOST = {"package.json": json.dumps({"name": "left-padder", "version": "1.0.0",
                                    "main": "index.js", "description": "pad strings"}).encode(),
        "index.js": BENIGN_INDEX.encode()}
SCANNER = Scanner(None, workers=1)
SCANNER.engine.results = None
WINDOWED = {"hooks": 0}


def _same(judge: Callable[[Scanner], Verdict], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "DETECTOR_WINDOW_THRESHOLD", 1 << 40)
    whole = judge(SCANNER)
    monkeypatch.setattr(engine, "DETECTOR_WINDOW_THRESHOLD", 0)
    before = hooks.find_hooks_windowed.cache_info().misses
    windowed = judge(SCANNER)
    WINDOWED["hooks"] += hooks.find_hooks_windowed.cache_info().misses - before
    assert replace(windowed, elapsed_s=0) == replace(whole, elapsed_s=0)


def _loaded(files: dict[str, bytes]) -> Loaded:
    manifest = json.loads(files["package.json"])
    return Loaded(PackageRef(manifest["name"], manifest["version"]), scan_snippet_files(files))


SPECS = specs()
VARIANTS = [*SPECS, *(v for s in SPECS if (v := obfuscated(s)) is not None)]


@pytest.mark.parametrize("spec", VARIANTS, ids=lambda s: s.name)
def test_replica_verdicts_are_the_same_in_windows(spec: object,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    bad, host = _loaded(inject(HOST, spec)), _loaded(HOST)  # type: ignore[arg-type]
    _same(lambda s: s.analyze(bad, host), monkeypatch)
    _same(lambda s: s.analyze(bad, None), monkeypatch)


def _samples() -> list[str]:
    if not SAMPLES_ZIP.is_file():
        return []
    with zipfile.ZipFile(SAMPLES_ZIP) as z:
        return [i.filename for i in z.infolist() if not i.is_dir()]


@pytest.mark.parametrize("name", _samples())
def test_real_sample_verdicts_are_the_same_in_windows(name: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    if not SAMPLES_ZIP.is_file():
        missing_part("shared corpus not present")
    with zipfile.ZipFile(SAMPLES_ZIP) as z:
        data = z.read(name, pwd=b"infected")
    files = read_tarball(data, name) if name.endswith(".tgz") else PackageFiles(
        name, (PackageFile("index.js", data),))
    _same(lambda s: s.analyze(s._with_metadata(files, None), None), monkeypatch)


def test_the_windows_were_used() -> None:
    """Runs last in this module: the replicas' browser hooks went through the windowed path."""
    assert WINDOWED["hooks"] > 0
