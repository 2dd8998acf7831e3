"""yarn.lock (classic): the field reader cannot be made to backtrack.

Before: fields were matched with ``^\\s+("?)([^"\\s]+)\\1\\s+"?([^"]*)"?\\s*$``, whose overlapping
whitespace runs backtracked polynomially: one line of 2,000 spaces took 15 s, 4,000 spaces 95 s
(``re.match`` timed in a loop on this machine, under load). Now the same lines take well under a
millisecond, with the same answers on every line the regex read.
"""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chainwatch.inventory import InventoryError
from chainwatch.inventory.yarn_classic import YarnClassicExtractor, keyval

OLD = re.compile(r'^\s+("?)([^"\s]+)\1\s+"?([^"]*)"?\s*$')
NO_SIBLING = lambda name: None  # noqa: E731


@settings(max_examples=1500, deadline=None)
@given(st.text(alphabet=' "\tab1:\x0c', max_size=14))
def test_same_answer_as_the_regex_it_replaced(tail: str) -> None:
    line = " " + tail
    m = OLD.match(line)
    assert keyval(line) == ((m.group(2), m.group(3)) if m else None)


@pytest.mark.parametrize("spaces", [4_000, 200_000])
def test_long_whitespace_lines_are_linear(spaces: int) -> None:
    lock = ('"a@^1.0.0":\n  version "1.0.0"\n  resolved' + " " * spaces + '"x"y\n').encode()
    start = time.perf_counter()
    with pytest.raises(InventoryError, match="cannot read"):
        YarnClassicExtractor().extract("yarn.lock", lock, NO_SIBLING)
    assert time.perf_counter() - start < 10  # generous: ~1 ms; the regex needed minutes


def test_fields_are_still_read() -> None:
    lock = ('"a@^1.0.0", a@^1.1.0:\n  version "1.2.0"\n  resolved "https://r.invalid/a.tgz#0"\n'
            "  integrity sha512-AAAA\n  dependencies:\n    b \"^2\"\n\n"
            'b@^2:\n  version "2.0.0"\n')
    env = YarnClassicExtractor().extract("yarn.lock", lock.encode(), NO_SIBLING)
    found = {(p.name, p.version): p for p in env.packages}
    assert set(found) == {("a", "1.2.0"), ("b", "2.0.0")}
    assert found[("a", "1.2.0")].integrity == "sha512-AAAA"
    assert found[("b", "2.0.0")].paths == (("(root)", "a", "b"),)
