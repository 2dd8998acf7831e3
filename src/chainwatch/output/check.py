"""Outputs of ``chainwatch check``: table, json, sarif, github (workflow annotations)."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence

from chainwatch import __version__
from chainwatch.gate.check import UNAVAILABLE, Placed
from chainwatch.output.console import render_console, rendered
from chainwatch.output.escape import plain
from chainwatch.output.table import safe
from chainwatch.output.words import plural


def _row(p: Placed) -> dict[str, object]:
    d = p.decision
    return {"name": d.name, "version": d.version, "action": d.action, "rule": d.rule,
            "reason": d.reason, "suggestion": d.suggestion, "note": d.note, "source": p.source, "dev": p.dev,
            "path": list(p.path)}


def summary(placed: Sequence[Placed], checked: int) -> dict[str, int]:
    return {"checked": checked,
            "blocked": len({(p.decision.name, p.decision.version) for p in placed
                            if p.decision.action == "block"}),
            "warned": len({(p.decision.name, p.decision.version) for p in placed
                           if p.decision.action == "warn"}),
            "excepted": len({(p.decision.name, p.decision.version) for p in placed
                             if p.decision.action == "allow"})}


def check_json(placed: Sequence[Placed], checked: int,
               errors: Sequence[dict[str, str]] = ()) -> str:
    """``errors`` are the files that could not be read (the run exits 2 unless it blocked)."""
    return json.dumps({"schema": "chainwatch.check/1", "summary": summary(placed, checked),
                       "decisions": [_row(p) for p in placed], "errors": list(errors)}, indent=2)


ACTION_STYLE = {"block": "bold red", "warn": "yellow", "allow": "green"}
ORDER = {"block": 0, "warn": 1, "allow": 2}


def _fold_unreachable(placed: Sequence[Placed]) -> tuple[list[Placed], list[Placed]]:
    """The ``registry`` decisions made because the registry could not be asked (one per
    package when it is down: the same line over and over) apart from the rest; a version
    the registry does not list, or one judged on a stale copy, stays a row of its own."""
    rest: list[Placed] = []
    folded: list[Placed] = []
    for p in placed:
        if p.decision.rule == "registry" and p.decision.reason.startswith(UNAVAILABLE):
            folded.append(p)
        else:
            rest.append(p)
    if len(folded) < 2:
        return list(placed), []
    if len({p.decision.action for p in folded}) > 1:  # not one verdict: keep the rows
        return list(placed), []
    return rest, folded


def check_table(placed: Sequence[Placed], checked: int, width: int | None = None,
                color: bool = False) -> str:
    """The decisions for a person; ``width`` None (a pipe) never wraps a line."""
    from rich.table import Table  # the other formats never load it

    buf = io.StringIO()
    console = render_console(buf, color, width)
    s = summary(placed, checked)
    console.print(f"{plural(s['checked'], 'version')} checked: {s['blocked']} blocked, "
                  f"{s['warned']} warned"
                  + (f", {s['excepted']} allowed by a policy exception" if s["excepted"] else ""))
    placed, unavailable = _fold_unreachable(placed)
    if unavailable:
        first = unavailable[0].decision
        why = next((p.decision.reason for p in unavailable
                    if "an earlier request failed" not in p.decision.reason), first.reason)
        count = len({(p.decision.name, p.decision.version) for p in unavailable})
        console.print(f"{safe(first.action)}: the registry could not be asked for "
                      f"{plural(count, 'version')} "
                      f"(rule registry; --format json lists each): "
                      f"{safe(why.removeprefix(UNAVAILABLE))}", markup=False, soft_wrap=True)
    if placed:
        table = Table(box=None)
        for col in ("action", "package", "rule", "why", "instead", "where"):
            table.add_column(col, overflow="fold")
        for p in sorted(placed, key=lambda p: (ORDER.get(p.decision.action, 3), p.decision.name)):
            d = p.decision
            style = ACTION_STYLE.get(d.action, "default")
            table.add_row(f"[{style}]{safe(d.action)}[/]", safe(f"{d.name}@{d.version}"),
                          safe(d.rule), safe(d.reason),
                          safe(" ".join(x for x in (d.suggestion, d.note and f"({d.note})")
                                        if x) or "-"),
                          safe(f"{p.source}" + (f" ({' > '.join(p.path)})" if p.path else "")))
        console.print(table)
    return rendered(buf)


def _gh_escape(text: str) -> str:
    return plain(text).replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def check_github(placed: Sequence[Placed], errors: Sequence[dict[str, str]] = ()) -> str:
    """GitHub Actions workflow commands: one annotation per decision and per unread file."""
    lines = [f"::error file={_gh_escape(e['source']).replace(',', '%2C').replace(':', '%3A')},"
             f"title=chainwatch could not read this file::{_gh_escape(e['error'])}"
             for e in errors]
    for p in placed:
        d = p.decision
        level = {"block": "error", "warn": "warning"}.get(d.action, "notice")
        props = f"file={_gh_escape(p.source).replace(',', '%2C').replace(':', '%3A')}"
        message = f"{d.name}@{d.version}: {d.reason}" + (
            f" (use {d.suggestion})" if d.suggestion else "") + (f" ({d.note})" if d.note else "")
        lines.append(f"::{level} {props},title=chainwatch {d.rule}::{_gh_escape(message)}")
    return "\n".join(lines)


def check_sarif(placed: Sequence[Placed], errors: Sequence[dict[str, str]] = ()) -> str:
    rules = sorted({p.decision.rule for p in placed})
    results = [{
        "ruleId": f"CW-POLICY-{p.decision.rule.upper()}",
        "level": {"block": "error", "warn": "warning"}.get(p.decision.action, "note"),
        "message": {"text": plain(f"{p.decision.name}@{p.decision.version}: {p.decision.reason}"
                                  + (f" (use {p.decision.suggestion})"
                                     if p.decision.suggestion else "")
                                  + (f" ({p.decision.note})" if p.decision.note else ""))},
        "locations": [{"physicalLocation": {"artifactLocation": {
            "uri": plain(p.source).replace(" ", "%20")}}}],
        # an applied policy exception: a reviewed, documented suppression
        **({"suppressions": [{"kind": "external", "status": "accepted",
                              "justification": plain(p.decision.reason)}]}
           if p.decision.action == "allow" else {}),
    } for p in placed]
    return json.dumps({
        "$schema": "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/"
                   "sarif-schema-2.1.0.json",
        "version": "2.1.0",
        "runs": [{"tool": {"driver": {"name": "chainwatch", "version": __version__, "rules": [
            {"id": f"CW-POLICY-{r.upper()}", "shortDescription": {"text": f"policy: {r}"}}
            for r in rules]}},
            "invocations": [{"executionSuccessful": not errors, "toolExecutionNotifications": [{
                "level": "error", "message": {"text": plain(e["error"])},
                "locations": [{"physicalLocation": {"artifactLocation": {
                    "uri": plain(e["source"]).replace(" ", "%20")}}}]} for e in errors]}],
            "results": results}]}, indent=2)
