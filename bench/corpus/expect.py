"""What a replica's payload must show in the sandbox, declared in its spec as data.

A spec's ``dynamic`` block says when the payload runs and which events that must produce::

    dynamic:
      runs: install          # install | load | browser | never
      events: [file-bait, net, exfil]
      why: ...               # for ``never``: why nothing runs at install or load

Event names are the sandbox's event kinds (``file``, ``write``, ``net``, ``dns``, ``exec``,
``hook``, ``env``, ``eval``) plus a few sharper ones read off the CW-DYN findings: ``file-bait``
(a bait secret file opened), ``env-bait`` (a bait token variable read by name), ``exfil`` (a
bait value left in a DNS name, request or TLS name), ``persist`` (a persistence path written),
``shell`` (a shell, interpreter or downloader started). ``net`` is met by a DNS query too: a
client resolves before it connects, and the sink answers both. Each must be seen in a phase of
the declared kind (``install``: pre/post/install and binding.gyp; ``load``: require/import;
``browser``: the fake window).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from chainwatch.model import Dynamic, Finding

RUNS = ("install", "load", "browser", "never")
KINDS = ("file", "write", "net", "dns", "exec", "hook", "env", "eval")
SHARP = {"file-bait": "CW-DYN-BAIT-READ", "env-bait": "CW-DYN-BAIT-ENV", "exfil": "CW-DYN-EXFIL",
         "persist": "CW-DYN-PERSISTENCE", "shell": "CW-DYN-SHELL"}
NAMES = (*KINDS, *SHARP)
INSTALL_PHASES = ("preinstall", "install", "postinstall")


@dataclass(frozen=True)
class Expect:
    runs: str
    events: tuple[str, ...]
    why: str = ""


def parse(raw: Any) -> Expect | None:
    """The ``dynamic`` block of a spec, checked; None when the spec declares none."""
    if raw is None:
        return None
    if not isinstance(raw, dict) or raw.get("runs") not in RUNS:
        raise ValueError(f"dynamic: needs runs: one of {', '.join(RUNS)}")
    events = tuple(str(e) for e in raw.get("events") or ())
    unknown = [e for e in events if e not in NAMES]
    if unknown:
        raise ValueError(f"dynamic: unknown event names {unknown} (known: {', '.join(NAMES)})")
    if raw["runs"] == "never" and (events or not raw.get("why")):
        raise ValueError("dynamic: runs: never takes no events and says why")
    if raw["runs"] != "never" and not events:
        raise ValueError("dynamic: a payload that runs must name the events it shows")
    return Expect(raw["runs"], events, str(raw.get("why") or ""))


def phase_group(phase: str) -> str:
    """install | load | browser | other, for a phase name of the sandbox."""
    if phase in INSTALL_PHASES or phase.startswith("gyp"):
        return "install"
    if phase.startswith("load"):
        return "load"
    if phase == "browser":
        return "browser"
    return "other"


def _finding_phase(f: Finding) -> str:
    """The phase a CW-DYN finding names at the end of its message: ``(sandbox, X phase)``."""
    tail = f.message.rsplit("(sandbox, ", 1)
    return tail[1].removesuffix(" phase)") if len(tail) == 2 else ""


def observed(dynamic: Dynamic, findings: Iterable[Finding]) -> dict[str, set[str]]:
    """Each event name seen, with the phase groups it was seen in."""
    seen: dict[str, set[str]] = {}
    for e in dynamic.events:
        group = phase_group(e.phase)
        seen.setdefault(e.kind, set()).add(group)
        if e.kind == "dns":
            seen.setdefault("net", set()).add(group)
    by_rule = {rule: name for name, rule in SHARP.items()}
    for f in findings:
        if f.rule in by_rule:
            seen.setdefault(by_rule[f.rule], set()).add(phase_group(_finding_phase(f)))
    return seen


def missing(expect: Expect, dynamic: Dynamic, findings: Iterable[Finding]) -> list[str]:
    """The declared events not seen in a phase of the declared kind (empty: all there)."""
    if expect.runs == "never":
        return []
    seen = observed(dynamic, findings)
    return [e for e in expect.events if expect.runs not in seen.get(e, set())]
