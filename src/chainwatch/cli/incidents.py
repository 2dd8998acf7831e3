"""``chainwatch incidents`` and ``chainwatch report``."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from chainwatch.cli.app import app, err
from chainwatch.cli.common import (
    _known_bad,
    _unreadable,
)
from chainwatch.cli.options import (
    DbOpt,
)
from chainwatch.errors import ChainwatchError
from chainwatch.output.words import plural


class IncidentsFormat(StrEnum):
    table = "table"
    json = "json"


@app.command("incidents", epilog=(
    "Examples:\n\n"
    "  chainwatch incidents\n\n"
    "  chainwatch incidents --format json"))
def incidents_cmd(
    db: DbOpt = None,
    fmt: Annotated[IncidentsFormat, typer.Option(
        "--format", "-f", help="Output format.")] = IncidentsFormat.table,
) -> None:
    """Group stored suspicious and malicious verdicts into incidents, and list them."""
    import json as jsonlib

    from chainwatch.incidents.store import IncidentStore

    store = IncidentStore(db)
    store.rebuild(_known_bad(db))
    rows = store.listed()
    if fmt is IncidentsFormat.json:
        typer.echo(jsonlib.dumps({"schema": "chainwatch.incidents/1", "incidents": rows},
                                 indent=2))
        return
    from chainwatch.incidents.render import render_list

    typer.echo(render_list(rows))


class ReportFormat(StrEnum):
    markdown = "markdown"
    html = "html"
    json = "json"
    osv = "osv"
    stix = "stix"
    sarif = "sarif"


def _write_empty_report(fmt: ReportFormat, output: Path, note: str) -> None:
    """What ``report -o`` writes when there is nothing to report, in the format asked for."""
    import html as htmllib
    import json as jsonlib
    import uuid

    from chainwatch.output.sarif import SARIF_SCHEMA

    if fmt is ReportFormat.osv:
        output.mkdir(parents=True, exist_ok=True)  # no records: an empty folder
        return
    if fmt is ReportFormat.html:
        text = (f"<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>chainwatch brief"
                f"</title></head><body><p>{htmllib.escape(note)}</p></body></html>\n")
    elif fmt is ReportFormat.json:
        text = jsonlib.dumps({"incidents": [], "note": note}, indent=2) + "\n"
    elif fmt is ReportFormat.stix:
        text = jsonlib.dumps({"type": "bundle", "id": f"bundle--{uuid.uuid4()}", "objects": []},
                             indent=2) + "\n"
    elif fmt is ReportFormat.sarif:
        text = jsonlib.dumps({"version": "2.1.0", "$schema": SARIF_SCHEMA, "runs": [
            {"tool": {"driver": {"name": "chainwatch"}}, "results": []}]}, indent=2) + "\n"
    else:
        text = note + "\n"
    output.write_text(text, encoding="utf-8")


@app.command(epilog=(
    "Examples:\n\n"
    "  chainwatch report --incident INC-1 -o brief.md\n\n"
    "  chainwatch scan x@1.0.1 -f json > s.json && chainwatch report s.json -f osv -o osv/"))
def report(
    from_files: Annotated[list[Path] | None, typer.Argument(
        metavar="FILE",
        help="Scan JSON/JSONL files (scan --format json) to build the incident from, "
        "instead of the database.", show_default=False)] = None,
    incident: Annotated[str | None, typer.Option(
        "--incident", metavar="ID", help="An incident id from `chainwatch incidents`.")] = None,
    fmt: Annotated[ReportFormat, typer.Option(
        "--format", "-f", metavar="FORMAT",
        help="Brief as markdown, html or json; export as osv, stix or sarif.")] = ReportFormat.markdown,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", metavar="PATH",
        help="Write here (for osv: a folder, one record per file).")] = None,
    db: DbOpt = None,
) -> None:
    """Write the analyst's brief of an incident, or export it as OSV, STIX 2.1 or SARIF."""
    import json as jsonlib

    from chainwatch.db import connect
    from chainwatch.fleet import Fleet
    from chainwatch.incidents import brief as briefing
    from chainwatch.incidents import osv, render, stix
    from chainwatch.incidents.ach import assess
    from chainwatch.incidents.cluster import cluster
    from chainwatch.incidents.store import observations_from_db, observations_from_files
    from chainwatch.output.escape import plain
    from chainwatch.output.jsonout import verdict_from_dict

    if output is not None and not output.parent.is_dir():
        err.print(f"error: --output {output}: no folder {output.parent}", markup=False)
        raise typer.Exit(2)
    if output is not None and output.is_dir() and fmt is not ReportFormat.osv:
        err.print(f"error: --output {output} is a folder; give a file name", markup=False)
        raise typer.Exit(2)
    known_bad = _known_bad(db)
    try:
        if from_files:
            observed = []
            for file in from_files:
                try:
                    observed += observations_from_files([file], known_bad)
                except (OSError, UnicodeError) as exc:
                    _unreadable(str(file), exc)
            found = cluster(observed)
        else:
            found = cluster(observations_from_db(connect(db), known_bad))
    except ChainwatchError as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(exc.exit_code) from exc
    if not found and incident is None:
        # benign scans (or an empty database) are not an error: there is nothing to report
        where = "the scan files hold" if from_files else "the database holds"
        note = f"Nothing to report: {where} no suspicious or malicious verdict."
        if output is not None:
            # -o always leaves a file (or folder) behind, so a pipeline never picks up a stale one
            _write_empty_report(fmt, output, note)
        elif fmt is ReportFormat.markdown:
            typer.echo(note)
        if fmt is not ReportFormat.markdown or output is not None:
            err.print(note, markup=False)
        return
    chosen = [i for i in found if incident is None or i.id == incident]
    if not chosen or (incident is None and len(chosen) > 1):
        listing = ", ".join(
            f"{i.id} ({', '.join(sorted({f'{m.package}@{m.version}' for m in i.members})[:3])})"
            for i in found[:10]) or "none"
        source, hold = ("the scan files", "hold") if from_files else ("the database", "holds")
        if incident:
            problem = f"no incident {incident} in {source}"
        else:
            problem = (f"{source} {hold} {len(found)} incidents: name one with --incident "
                       "(each brief is about one incident)")
        err.print(plain(f"error: {problem}; incidents: {listing}"), markup=False)
        raise typer.Exit(2)
    inc = chosen[0]
    fleet = Fleet(db)
    exposure = [{"label": s.label, "package": s.name, "version": s.version,
                 "recorded_at": s.recorded_at}
                for m in inc.members for s in fleet.query(f"{m.package}@{m.version}")]
    doc = briefing.build(inc, exposure, fleet.environment_count())
    if fmt is ReportFormat.osv:
        records = osv.records(inc)
        if local := osv.withheld(inc):
            err.print(plain(f"not exported: {', '.join(local[:5])} (judged from local files, which "
                            "say nothing about the registry's release)"), markup=False)
        if output is not None:
            output.mkdir(parents=True, exist_ok=True)
            for rec in records:
                (output / f"{rec['id']}.json").write_text(jsonlib.dumps(rec, indent=2))
            err.print(f"wrote {plural(len(records), 'OSV record')} to {output}", markup=False)
            return
        text = jsonlib.dumps(records, indent=2)
    elif fmt is ReportFormat.stix:
        text = stix.bundle(inc, assess(inc).best.hypothesis)
    elif fmt is ReportFormat.sarif:
        from chainwatch.output.sarif import render as sarif

        text = sarif([verdict_from_dict(m.document) for m in inc.members if m.document])
    elif fmt is ReportFormat.html:
        text = render.render_html(doc)
    elif fmt is ReportFormat.json:
        text = render.render_json(doc)
    else:
        text = render.render_markdown(doc)
    if output is not None:
        output.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
        err.print(f"wrote {output}", markup=False)
    else:
        typer.echo(text, nl=not text.endswith("\n"))
