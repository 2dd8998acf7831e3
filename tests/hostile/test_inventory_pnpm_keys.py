"""pnpm-lock keys: stripping the peer suffix cannot be made quadratic.

Before: ``re.sub(r"\\(.*\\)$", "", key)`` on a key of 20,000 ``(`` took 0.4 s (quadratic: 200,000
would take ~40 s, and each key is stripped several times). Now linear, same answers.
"""

from __future__ import annotations

import re
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from chainwatch.inventory.pnpm_lock import PnpmLockExtractor, strip_peers

OLD = re.compile(r"\(.*\)$")


@settings(max_examples=2000, deadline=None)
@given(st.text(alphabet="()\n@a1/", max_size=16))
def test_same_answer_as_the_regex_it_replaced(key: str) -> None:
    assert strip_peers(key) == OLD.sub("", key)


def test_real_keys() -> None:
    assert strip_peers("@s/n@1.0.0(react@18.2.0)(typescript@5.0.0)") == "@s/n@1.0.0"
    assert strip_peers("/a/1.0.0") == "/a/1.0.0"


def test_a_lockfile_of_long_parenthesised_keys_is_linear() -> None:
    key = "a@1.0.0" + "(" * 200_000 + ")"
    lock = (f"lockfileVersion: '9.0'\nimporters:\n  .:\n    dependencies:\n      a:\n"
            f"        specifier: ^1\n        version: '{key}'\n"
            f"packages:\n  'a@1.0.0': {{resolution: {{integrity: sha512-AAAA}}}}\n"
            f"snapshots:\n  ? '{key}'\n  : {{}}\n")  # an explicit key: no 1024-char limit
    start = time.perf_counter()
    env = PnpmLockExtractor().extract("pnpm-lock.yaml", lock.encode(), lambda n: None)
    assert time.perf_counter() - start < 20  # generous: well under a second here
    assert [(p.name, p.version) for p in env.packages] == [("a", "1.0.0")]
