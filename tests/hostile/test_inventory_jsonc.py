"""bun.lock's JSONC pre-pass: linear, and the same answer as the character loop it replaced."""

from __future__ import annotations

import json
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chainwatch.inventory.bun_lock import strip_jsonc


def reference(text: str) -> str:
    """The character-by-character loop strip_jsonc replaced: the oracle for valid input."""
    out: list[str] = []
    i, n = 0, len(text)
    in_string = False
    while i < n:
        c = text[i]
        if in_string:
            out.append(c)
            if c == "\\" and i + 1 < n:
                out.append(text[i + 1])
                i += 2
                continue
            if c == '"':
                in_string = False
        elif c == '"':
            in_string = True
            out.append(c)
        elif text.startswith("//", i):
            while i < n and text[i] != "\n":
                i += 1
            continue
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = n if end < 0 else end + 2
            continue
        elif c == ",":
            j = i + 1
            while j < n and text[j] in " \t\r\n":
                j += 1
            if j < n and text[j] in "]}":
                i += 1
                continue
            out.append(c)
        else:
            out.append(c)
        i += 1
    return "".join(out)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet='{}[],:"/*\\ \n\tab1', max_size=80))
def test_same_as_the_reference_whenever_the_reference_is_json(text: str) -> None:
    expected = reference(text)
    try:
        want = json.loads(expected)
    except ValueError:
        return  # invalid either way: both end as a "not valid JSONC" error
    assert strip_jsonc(text) == expected and json.loads(strip_jsonc(text)) == want


def test_large_bun_lock_is_linear() -> None:
    entry = '  /* p */ "pkg-%d": ["pkg-%d@1.0.0", "", {"dependencies": {"a": "^1",}}, "sha512-x"],\n'
    text = "{\n" + "".join(entry % (i, i) for i in range(120_000)) + "}\n"  # ~10 MB
    start = time.perf_counter()
    stripped = strip_jsonc(text)
    assert time.perf_counter() - start < 30  # generous: ~0.3 s here, the loop took ~1 s
    assert len(json.loads(stripped)) == 120_000
