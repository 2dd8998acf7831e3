"""Issue 14: the per-file result cache changes no verdict.

Every replica (plain and hand-obfuscated, diffed against its host and alone), every real
sample, and popular releases (alone and as patch pairs, from the registry, cached) are judged
three ways: without a cache, through one cache shared by everything judged before (so files
met earlier answer from it), and a second time from that warm cache. Finding for finding,
verdict for verdict, the three must agree; the warm pass must have answered from the cache.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable
from dataclasses import replace

import pytest
from bench.corpus.replica import inject, obfuscated, specs

from chainwatch.archive import read_tarball
from chainwatch.errors import ChainwatchError
from chainwatch.model import PackageFile, PackageFiles, PackageRef, Verdict
from chainwatch.registry import RegistryClient
from chainwatch.scan import Loaded, Scanner, scan_snippet_files
from tests.helpers import BENIGN_INDEX, SAMPLES_ZIP, missing_part
from tests.integration.conftest import FIXTURE_CACHE

HOST = {"package.json": json.dumps({"name": "left-padder", "version": "1.0.0",
                                    "main": "index.js", "description": "pad strings"}).encode(),
        "index.js": BENIGN_INDEX.encode()}
#: popular patch releases and their settled baselines (small enough for a test run)
POPULAR = [("chalk@6.0.1", "chalk@6.0.0"), ("debug@4.4.3", "debug@4.4.1"),
           ("axios@1.21.1", "axios@1.21.0"), ("node-forge@1.4.3", "node-forge@1.4.2"),
           ("socket.io@4.8.4", "socket.io@4.8.3"), ("jsonwebtoken@9.0.3", "jsonwebtoken@9.0.2"),
           ("pg@8.23.1", "pg@8.23.0"), ("semver@7.8.6", "semver@7.8.5")]

UNCACHED = Scanner(None, workers=1)
UNCACHED.engine.results = None
SHARED = Scanner(None, workers=1)  # one cache across every test of this module


def _same(judge: Callable[[Scanner], Verdict]) -> None:
    expected = judge(UNCACHED)
    assert SHARED.engine.results is not None
    hits = SHARED.engine.results.hits
    first = judge(SHARED)
    again = judge(SHARED)
    assert SHARED.engine.results.hits > hits, "the second pass must answer from the cache"
    for verdict in (first, again):
        assert replace(verdict, elapsed_s=0) == replace(expected, elapsed_s=0)


def _loaded(files: dict[str, bytes]) -> Loaded:
    manifest = json.loads(files["package.json"])
    return Loaded(PackageRef(manifest["name"], manifest["version"]), scan_snippet_files(files))


SPECS = specs()
VARIANTS = [*SPECS, *(v for s in SPECS if (v := obfuscated(s)) is not None)]


@pytest.mark.parametrize("spec", VARIANTS, ids=lambda s: s.name)
def test_replica_verdicts_are_the_same_with_the_cache(spec: object) -> None:
    bad, host = _loaded(inject(HOST, spec)), _loaded(HOST)  # type: ignore[arg-type]
    _same(lambda s: s.analyze(bad, host))
    _same(lambda s: s.analyze(bad, None))


def _samples() -> list[str]:
    if not SAMPLES_ZIP.is_file():
        return []
    with zipfile.ZipFile(SAMPLES_ZIP) as z:
        return [i.filename for i in z.infolist() if not i.is_dir()]


@pytest.mark.parametrize("name", _samples())
def test_real_sample_verdicts_are_the_same_with_the_cache(name: str) -> None:
    with zipfile.ZipFile(SAMPLES_ZIP) as z:
        data = z.read(name, pwd=b"infected")
    files = read_tarball(data, name) if name.endswith(".tgz") else PackageFiles(
        name, (PackageFile("index.js", data),))
    _same(lambda s: s.analyze(s._with_metadata(files, None), None))


def test_the_real_samples_are_there() -> None:
    if not SAMPLES_ZIP.is_file():
        missing_part("shared corpus not present")


@pytest.fixture(scope="module")
def popular() -> dict[str, Loaded]:
    out: dict[str, Loaded] = {}
    try:
        with RegistryClient(cache_dir=FIXTURE_CACHE, retries=1, timeout=30) as client:
            loader = Scanner(client, workers=1)
            for pair in POPULAR:
                for spec in pair:
                    out[spec] = loader.load(spec)
    except ChainwatchError as exc:
        pytest.skip(f"npm registry unreachable: {exc}")
    # judged from memory: no registry lookups while judging (same input for all three)
    return {k: replace(v, packument=None, release=None) for k, v in out.items()}


@pytest.mark.parametrize("pair", POPULAR, ids=lambda p: p[0])
def test_popular_verdicts_are_the_same_with_the_cache(pair: tuple[str, str],
                                                       popular: dict[str, Loaded]) -> None:
    target, baseline = popular[pair[0]], popular[pair[1]]
    _same(lambda s: s.analyze(target, baseline))
    _same(lambda s: s.analyze(target, None))
