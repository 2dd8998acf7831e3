"""The replica specs' ``dynamic`` blocks and the matcher bench/dynamic.py and the sandbox
replica test use: declared events must be seen in a phase of the declared kind."""

from __future__ import annotations

import pytest
from bench.corpus.expect import Expect, missing, observed, parse

from chainwatch.model import Dynamic, DynamicEvent
from chainwatch.sandbox.findings import findings_for
from chainwatch.sandbox.strace import Event


def _run(*events: Event) -> tuple[Dynamic, list]:  # type: ignore[type-arg]
    dynamic = Dynamic(True, 1.0, "", tuple(DynamicEvent(e.kind, e.detail, e.phase) for e in events))
    return dynamic, findings_for(list(events))


def test_parse_checks_names_and_the_never_case() -> None:
    assert parse(None) is None
    assert parse({"runs": "install", "events": ["exfil", "net"]}) == Expect("install", ("exfil", "net"))
    for bad in ({"runs": "sometimes", "events": ["net"]}, {"runs": "load", "events": ["teleport"]},
                {"runs": "load"}, {"runs": "never", "events": ["net"], "why": "x"},
                {"runs": "never"}):
        with pytest.raises(ValueError):
            parse(bad)


def test_events_count_only_in_the_declared_phase() -> None:
    expect = Expect("install", ("file-bait", "net"))
    at_load = _run(Event("file", "read /home/node/.npmrc", "load", target="/home/node/.npmrc"),
                   Event("dns", "query x.example.invalid", "load"))
    assert missing(expect, *at_load) == ["file-bait", "net"]
    at_install = _run(Event("file", "read /home/node/.npmrc", "postinstall",
                            target="/home/node/.npmrc"),
                      Event("dns", "query x.example.invalid", "gyp2"))
    assert missing(expect, *at_install) == []
    assert observed(*at_install)["file-bait"] == {"install"}


def test_exfil_needs_a_bait_value_seen_leaving() -> None:
    expect = Expect("load", ("exfil",))
    quiet = _run(Event("net", "HTTPS POST /u host a.example.invalid", "load"))
    assert missing(expect, *quiet) == ["exfil"]
    loud = _run(Event("net", "HTTPS POST /u host a.example.invalid", "load", bait=("npm token",)))
    assert missing(expect, *loud) == []
    assert missing(Expect("never", (), "CLI only"), *quiet) == []
