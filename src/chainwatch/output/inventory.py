"""Outputs of ``inventory`` and ``exposure``: table, json, markdown, sarif, cyclonedx."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from typing import Any

from rich.table import Table

from chainwatch import __version__
from chainwatch.exposure import Exposure
from chainwatch.model import Environment, InstalledPackage
from chainwatch.output.console import render_console, rendered
from chainwatch.output.escape import md_text as md
from chainwatch.output.escape import plain
from chainwatch.output.table import safe
from chainwatch.output.words import noun_for, plural


def _package(p: InstalledPackage) -> dict[str, Any]:
    return {"name": p.name, "version": p.version, "dev": p.dev, "optional": p.optional,
            "resolved": p.resolved, "integrity": p.integrity, "exact": p.exact,
            "paths": [list(path) for path in p.paths]}


def _env(env: Environment) -> dict[str, Any]:
    return {"id": env.id, "kind": env.kind, "source": env.source, "errors": list(env.errors)}


def inventory_json(envs: Sequence[Environment], errors: Sequence[dict[str, str]]) -> str:
    return json.dumps({"schema": "chainwatch.inventory/1", "environments": [
        {**_env(e), "packages": [_package(p) for p in e.packages]} for e in envs],
        "errors": list(errors)}, indent=2)


def inventory_cyclonedx(envs: Sequence[Environment]) -> str:
    from packageurl import PackageURL

    components, seen = [], set()
    for env in envs:
        for p in env.packages:
            if not p.exact or (p.name, p.version) in seen:
                continue
            seen.add((p.name, p.version))
            namespace, _, name = p.name.rpartition("/")
            purl = PackageURL(type="npm", namespace=namespace or None, name=name,
                              version=p.version).to_string()
            components.append({"type": "library", "name": p.name, "version": p.version,
                               "purl": purl, "bom-ref": purl,
                               "scope": "excluded" if p.dev else (
                                   "optional" if p.optional else "required")})
    return json.dumps({"bomFormat": "CycloneDX", "specVersion": "1.6", "version": 1,
                       "metadata": {"tools": {"components": [
                           {"type": "application", "name": "chainwatch",
                            "version": __version__}]}},
                       "components": components}, indent=2)


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
            "paths": [list(p) for p in h.package.paths]}


def exposure_json(exps: Sequence[Exposure], errors: Sequence[dict[str, str]]) -> str:
    return json.dumps({"schema": "chainwatch.exposure/1", "environments": [
        {**_env(x.environment), "hits": [_hit(h) for h in x.hits]} for x in exps],
        "summary": _summary(exps), "errors": list(errors)}, indent=2)


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
            table.add_row(f"[bold red]{safe(f'{h.package.name}@{h.package.version}')}[/]",
                          safe(", ".join(a.id for a in h.advisories)),
                          "dev" if h.package.dev else "prod", via)
        console.print(table)
    return rendered(buf)


def _held(s: dict[str, int]) -> str:
    """"1 of 3 environments holds known-bad versions", "0 of 1 environment hold …"."""
    return (f"{s['exposed']} of {plural(s['environments'], 'environment')} "
            f"{noun_for(s['exposed'], 'holds', 'hold')} known-bad versions")


def exposure_markdown(exps: Sequence[Exposure], errors: Sequence[dict[str, str]] = ()) -> str:
    s = _summary(exps)
    out = [f"**{s['exposed']} of {plural(s['environments'], 'environment')}** "
           f"{noun_for(s['exposed'], 'holds', 'hold')} known-bad versions.\n"]
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
