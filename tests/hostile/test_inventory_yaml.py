"""YAML bombs against the lockfile parsers: refused before they cost anything.

The figures: a 358-byte pnpm-lock.yaml of aliases (x9 per level, 8 levels) took 10.8 s and
1.18 GB (``/usr/bin/time chainwatch inventory``; 39 s and 1.13 GB under load in
``python bench/inventory_bombs.py``) before the bounded loader; now 0.04 s and 20 MB, refused
while composing.
"""

from __future__ import annotations

import contextlib
import time
import tracemalloc
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chainwatch.inventory import InventoryError, safe_yaml
from chainwatch.inventory.pnpm_lock import PnpmLockExtractor
from chainwatch.inventory.walk import FileError, walk
from chainwatch.inventory.yarn_berry import YarnBerryExtractor
from chainwatch.model import Environment
from tests.helpers import SHARED

NO_SIBLING = lambda name: None  # noqa: E731
LOCKFILES = SHARED / "corpus" / "lockfiles"

PNPM_OK = """lockfileVersion: '9.0'
importers:
  .:
    dependencies:
      debug:
        specifier: ^4
        version: 4.4.2
packages:
  debug@4.4.2:
    resolution: {integrity: sha512-AAAA}
snapshots:
  debug@4.4.2: {}
"""


def laughs(levels: int, fan: int = 9, head: str = "lockfileVersion: '9.0'\n",
           tail: str = "importers:\n  .:\n    dependencies:\n      x: *{last}\n") -> str:
    """The billion laughs: each level lists the previous one ``fan`` times."""
    lines = [head.rstrip("\n"), "a: &a [" + ",".join(["'x'"] * fan) + "]"]
    prev = "a"
    for i in range(1, levels):
        name = chr(ord("a") + i)
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * fan) + "]")
        prev = name
    return "\n".join(lines) + "\n" + tail.format(last=prev)


def bounded(fn: object, *args: object) -> tuple[BaseException | None, float, int]:
    """Run fn, returning (the exception, seconds, peak bytes allocated by Python)."""
    tracemalloc.start()
    start = time.perf_counter()
    raised: BaseException | None = None
    try:
        fn(*args)  # type: ignore[operator]
    except BaseException as exc:  # reported to the caller
        raised = exc
    seconds = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return raised, seconds, peak


def test_the_reported_bomb_is_small_and_refused_cheaply() -> None:
    bomb = laughs(8)
    assert len(bomb) < 425  # the size of the reported file
    raised, seconds, peak = bounded(PnpmLockExtractor().extract, "pnpm-lock.yaml",
                                    bomb.encode(), NO_SIBLING)
    assert isinstance(raised, InventoryError) and "alias" in str(raised)
    assert seconds < 2.0 and peak < 20 * 1024 * 1024  # generous: in practice ~1 ms, ~100 KB


@pytest.mark.parametrize("levels", [5, 6, 7, 9, 12])
def test_every_size_of_bomb_is_refused_or_cheap(levels: int) -> None:
    raised, seconds, peak = bounded(PnpmLockExtractor().extract, "pnpm-lock.yaml",
                                    laughs(levels).encode(), NO_SIBLING)
    # small ones stay under the budget and are merely useless; large ones are refused
    assert raised is None or isinstance(raised, InventoryError)
    assert seconds < 5.0 and peak < 200 * 1024 * 1024


def test_a_bomb_under_the_node_budget_still_has_a_bounded_expansion() -> None:
    fan, levels = 9, 6  # 9**6 = 531,441 leaves: below the budget, so composed
    docs = safe_yaml.load_all(laughs(levels, fan))
    assert isinstance(docs[0], dict)
    # the budget is what bounds later work (str(), walks): it is the expanded size
    assert fan ** levels < safe_yaml.MAX_NODES < fan ** (levels + 1)


def test_berry_bomb_is_refused() -> None:
    head = '__metadata:\n  version: 8\n  cacheKey: 10\n'
    tail = '"x@npm:1.0.0":\n  version: 1.0.0\n  resolution: "x@npm:1.0.0"\n  dependencies: *{last}\n'
    bomb = laughs(8, head=head, tail=tail)
    raised, seconds, peak = bounded(YarnBerryExtractor().extract, "yarn.lock", bomb.encode(),
                                    NO_SIBLING)
    assert isinstance(raised, InventoryError) and "alias" in str(raised)
    assert seconds < 2.0 and peak < 20 * 1024 * 1024


@pytest.mark.parametrize(("text", "needle"), [
    ("a: " + "[" * 100_000, "YAML"),                       # flow nesting
    ("a:\n" + "".join(" " * i + "- \n" for i in range(0, 400, 2)), "nested"),  # block nesting
    ("- " * 5_000 + "x\n", "nested"),
    ("a: &a [*a]\n", "itself"),                             # a cycle
    ("a: *nowhere\n", "YAML"),
    ("\n".join(f"k{i}: &a{i} [1]" for i in range(2)) + "\n"
     + "\n".join(f"u{i}: *a0" for i in range(safe_yaml.MAX_ALIASES + 1)) + "\n", "aliases"),
    ("!!python/object/apply:os.system ['true']\n", "YAML"),  # no code, ever
])
def test_hostile_yaml_shapes_are_clear_errors(text: str, needle: str) -> None:
    with pytest.raises(InventoryError, match=needle):
        safe_yaml.load_all(text)


def test_size_is_bounded_before_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(safe_yaml, "MAX_BYTES", 1000)
    with pytest.raises(InventoryError, match="larger"):
        safe_yaml.load_all("a: b\n" * 300)


def test_small_legitimate_anchors_still_load() -> None:
    doc = safe_yaml.load("base: &b {x: 1}\nchild: {<<: *b, y: 2}\nsame: *b\n")
    assert doc == {"base": {"x": 1}, "child": {"x": 1, "y": 2}, "same": {"x": 1}}


@pytest.mark.skipif(not LOCKFILES.is_dir(), reason="shared corpus not present")
@pytest.mark.parametrize("name", ["vite.pnpm-lock.yaml", "babel.yarn-berry.lock"])
def test_real_lockfiles_load_exactly_as_pyyaml_does(name: str) -> None:
    text = (LOCKFILES / name).read_text(encoding="utf-8")
    expected = list(yaml.load_all(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)))
    assert safe_yaml.load_all(text) == expected


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet="ab&*:- []{}\n,'!x0", max_size=300))
def test_fuzz_the_loader_raises_only_inventory_errors(text: str) -> None:
    with contextlib.suppress(InventoryError):
        safe_yaml.load_all(text)


def test_the_walk_reports_the_bomb_and_reads_the_next_folder(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "pnpm-lock.yaml").write_text(laughs(9))
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "pnpm-lock.yaml").write_text(PNPM_OK)
    found, seconds, _ = bounded(lambda: list(walk([tmp_path])))
    results = list(walk([tmp_path]))
    assert found is None and seconds < 5.0
    errors = [r for r in results if isinstance(r, FileError)]
    envs = [r for r in results if isinstance(r, Environment)]
    assert [e.source for e in errors] == [str(tmp_path / "a" / "pnpm-lock.yaml")]
    assert [(p.name, p.version) for e in envs for p in e.packages] == [("debug", "4.4.2")]
