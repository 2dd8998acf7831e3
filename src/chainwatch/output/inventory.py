"""Outputs of ``inventory`` and ``exposure``: table, json, markdown, sarif, cyclonedx."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from typing import Any

import orjson
from rich.table import Table

from chainwatch import __version__
from chainwatch.exposure import Exposure
from chainwatch.model import Environment, InstalledPackage
from chainwatch.output.console import render_console, rendered
from chainwatch.output.cyclonedx import inventory_cyclonedx
from chainwatch.output.escape import md_text as md
from chainwatch.output.escape import plain
from chainwatch.output.table import safe
from chainwatch.output.words import noun_for, plural

__all__ = ["exposure_json", "exposure_markdown", "exposure_sarif", "exposure_table",
           "inventory_cyclonedx", "inventory_json", "inventory_table"]


def _package(p: InstalledPackage) -> dict[str, Any]:
    return {"name": p.name, "version": p.version, "dev": p.dev, "optional": p.optional,
            "resolved": p.resolved, "integrity": p.integrity, "exact": p.exact,
            "paths": [list(path) for path in p.paths], "paths_cut": p.paths_cut}


def _env(env: Environment) -> dict[str, Any]:
    return {"id": env.id, "kind": env.kind, "source": env.source, "errors": list(env.errors)}


def _dumps(doc: dict[str, Any]) -> str:
    """Indented JSON, by orjson (the standard encoder is pure Python once indented: 5 s for
    the 20,000 packages of a long chain); text orjson refuses (a lone surrogate from an
    undecodable file name) falls back to ``json`` with its escapes."""
    try:
        return orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode()
    except TypeError:
        return json.dumps(doc, indent=2)


def inventory_json(envs: Sequence[Environment], errors: Sequence[dict[str, str]]) -> str:
    return _dumps({"schema": "chainwatch.inventory/1", "environments": [
        {**_env(e), "packages": [_package(p) for p in e.packages]} for e in envs],
        "errors": list(errors)})


def inventory_table(envs: Sequence[Environment], width: int | None = None,
                    color: bool = False) -> str:
    buf = io.StringIO()
    console = render_console(buf, color, width)
    for env in envs:
        dev = sum(p.dev for p in env.packages)
        console.print(f"{safe(env.source)} ({env.kind}): {plural(len(env.packages), 'package')} "
                      f"({dev} dev)"
                      + (f", {plural(len(env.errors), 'problem')}" if env.errors else ""))
    return rendered(buf)


def _hit(h: Any) -> dict[str, Any]:
    return {"name": h.package.name, "version": h.package.version,
            "advisories": [a.id for a in h.advisories], "dev": h.package.dev,
            "paths": [list(p) for p in h.package.paths], "paths_cut": h.package.paths_cut}


def exposure_json(exps: Sequence[Exposure], errors: Sequence[dict[str, str]]) -> str:
    return _dumps({"schema": "chainwatch.exposure/1", "environments": [
        {**_env(x.environment), "hits": [_hit(h) for h in x.hits]} for x in exps],
        "summary": _summary(exps), "errors": list(errors)})


def _summary(exps: Sequence[Exposure]) -> dict[str, int]:
    return {"environments": len(exps), "exposed": sum(1 for x in exps if x.hits),
            "hits": sum(len(x.hits) for x in exps),
            "packages": sum(len(x.environment.packages) for x in exps)}


def exposure_table(exps: Sequence[Exposure], width: int | None = None,
                   color: bool = False) -> str:
    buf = io.StringIO()
    console = render_console(buf, color, width)
    s = _summary(exps)
    console.print(f"{_held(s)} ({plural(s['hits'], 'hit')} among "
                  f"{plural(s['packages'], 'package')})")
    for x in exps:
        if not x.hits:
            continue
        table = Table(title=safe(f"{x.environment.source} ({x.environment.kind})"), box=None,
                      title_justify="left")
        for col in ("package", "advisories", "scope", "via"):
            table.add_column(col, overflow="fold")
        for h in x.hits:
            via = "\n".join(safe(" > ".join(path)) for path in h.package.paths[:3]) or "-"
            if h.package.paths_cut or len(h.package.paths) > 3:
                via += "\n(more paths, or cut: see --format json)"
            table.add_row(f"[bold red]{safe(f'{h.package.name}@{h.package.version}')}[/]",
                          safe(", ".join(a.id for a in h.advisories)),
                          "dev" if h.package.dev else "prod", via)
        console.print(table)
    return rendered(buf)


def _held(s: dict[str, int]) -> str:
    """"1 of 3 environments holds known-bad versions", "0 of 1 environment holds …"."""
    return (f"{s['exposed']} of {plural(s['environments'], 'environment')} "
            f"{noun_for(s['exposed'] or s['environments'], 'holds', 'hold')} known-bad versions")


def exposure_markdown(exps: Sequence[Exposure], errors: Sequence[dict[str, str]] = ()) -> str:
    s = _summary(exps)
    out = [f"**{s['exposed']} of {plural(s['environments'], 'environment')}** "
           f"{noun_for(s['exposed'] or s['environments'], 'holds', 'hold')} known-bad versions.\n"]
    if errors:
        out.append(f"**{plural(len(errors), 'file')} could not be read** (they may hold "
                   "more):\n")
        out.extend(f"- {md(e['source'])}: {md(e['error'])}" for e in errors)
        out.append("")
    for x in exps:
        if not x.hits:
            continue
        out.append(f"### {md(x.environment.source)} ({md(x.environment.kind)})\n")
        out.append("| package | advisories | scope | via |")
        out.append("|---|---|---|---|")
        for h in x.hits:
            via = "<br>".join(md(" > ".join(p)) for p in h.package.paths[:3])
            if h.package.paths_cut or len(h.package.paths) > 3:
                via += "<br>(more paths, or cut)"
            out.append(f"| {md(h.package.name)}@{md(h.package.version)} | "
                       f"{md(', '.join(a.id for a in h.advisories))} | "
                       f"{'dev' if h.package.dev else 'prod'} | {via} |")
        out.append("")
    return "\n".join(out)


def exposure_sarif(exps: Sequence[Exposure], errors: Sequence[dict[str, str]] = ()) -> str:
    results = []
    for x in exps:
        for h in x.hits:
            results.append({
                "ruleId": "CW-EXPOSURE-KNOWN-BAD", "level": "error",
                "message": {"text": plain(
                    f"{h.package.name}@{h.package.version} is known-bad "
                    f"({', '.join(a.id for a in h.advisories)}); via "
                    f"{' > '.join(h.package.paths[0]) if h.package.paths else '?'}")},
                "locations": [{"physicalLocation": {"artifactLocation": {
                    "uri": plain(x.environment.source).replace(" ", "%20")}}}],
            })
    return json.dumps({"$schema": "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/"
                                  "schemas/sarif-schema-2.1.0.json",
                       "version": "2.1.0", "runs": [{"tool": {"driver": {
                           "name": "chainwatch", "version": __version__,
                           "rules": [{"id": "CW-EXPOSURE-KNOWN-BAD",
                                      "shortDescription": {"text": "known-bad version installed"}}]}},
                           "invocations": [{
                               "executionSuccessful": not errors,
                               "toolExecutionNotifications": [{
                                   "level": "error", "message": {"text": plain(e["error"])},
                                   "locations": [{"physicalLocation": {"artifactLocation": {
                                       "uri": plain(e["source"]).replace(" ", "%20")}}}]}
                                   for e in errors]}],
                           "results": results}]}, indent=2)
