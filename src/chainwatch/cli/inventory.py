"""``chainwatch inventory`` and ``chainwatch exposure``."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from chainwatch.cli.app import app, err
from chainwatch.cli.common import (
    _collect,
    _conflict,
    _exit_for_unreadable,
    _known_bad,
    _record,
)
from chainwatch.cli.options import (
    ColorOpt,
    DbOpt,
    ExcludeOpt,
    PathsArg,
    QuietOpt,
    RecordOpt,
)
from chainwatch.output.console import ColorMode, output_width, use_color
from chainwatch.output.words import plural


class InventoryFormat(StrEnum):
    table = "table"
    json = "json"
    cyclonedx = "cyclonedx"


class ExposureFormat(StrEnum):
    table = "table"
    json = "json"
    sarif = "sarif"
    markdown = "markdown"


@app.command(epilog=(
    "Examples:\n\n"
    "  chainwatch inventory ~/src\n\n"
    "  chainwatch inventory . --format cyclonedx > sbom.json"))
def inventory(
    paths: PathsArg,
    fmt: Annotated[InventoryFormat, typer.Option(
        "--format", "-f", help="Output format (cyclonedx: a CycloneDX 1.6 SBOM).")] = InventoryFormat.table,
    exclude: ExcludeOpt = None,
    record: RecordOpt = None,
    db: DbOpt = None,
    quiet: QuietOpt = False,
    color: ColorOpt = ColorMode.auto,
) -> None:
    """List the environments found under PATHS and the packages each holds.

    A line per environment with its package counts (table), or every package with its
    dependency paths (--format json, cyclonedx)."""
    from chainwatch.output import inventory as out

    envs, errors = _collect(paths, exclude, quiet)
    _record(record, envs, db)
    if fmt is InventoryFormat.json:
        typer.echo(out.inventory_json(envs, errors))
    elif fmt is InventoryFormat.cyclonedx:
        typer.echo(out.inventory_cyclonedx(envs))
    else:
        typer.echo(out.inventory_table(envs, output_width(sys.stdout),
                                       use_color(color, sys.stdout)), nl=False)
    _exit_for_unreadable(errors)


@app.command(epilog=(
    "Examples:\n\n"
    "  chainwatch exposure ~/src --format markdown\n\n"
    "  chainwatch exposure --query debug@4.4.2"))
def exposure(
    paths: Annotated[list[Path] | None, typer.Argument(
        metavar="PATH", help="Folders or files to inventory.")] = None,
    fmt: Annotated[ExposureFormat, typer.Option(
        "--format", "-f", help="Output format.")] = ExposureFormat.table,
    exclude: ExcludeOpt = None,
    query: Annotated[str | None, typer.Option(
        "--query", metavar="NAME@VERSION", help="Answer from fleet memory: which recorded environments held "
                        "name@version (or name@range), and when.")] = None,
    record: RecordOpt = None,
    db: DbOpt = None,
    quiet: QuietOpt = False,
    color: ColorOpt = ColorMode.auto,
) -> None:
    """Which environments under PATHS hold known-bad versions, and by which dependency path."""
    from chainwatch.exposure import expose
    from chainwatch.output import inventory as out

    if query and paths:
        _conflict("PATHS", "--query")
    if query:
        _answer_query(query, fmt, db)
        return
    if not paths:
        err.print("error: give PATHS to inventory, or --query name@version", markup=False)
        raise typer.Exit(2)
    envs, errors = _collect(paths, exclude, quiet)
    _record(record, envs, db)
    known_bad = _known_bad(db)
    exps = [expose(env, known_bad) for env in envs]
    if fmt is ExposureFormat.json:
        text = out.exposure_json(exps, errors)
    elif fmt is ExposureFormat.sarif:
        text = out.exposure_sarif(exps, errors)
    elif fmt is ExposureFormat.markdown:
        text = out.exposure_markdown(exps, errors)
    else:
        text = out.exposure_table(exps, output_width(sys.stdout), use_color(color, sys.stdout))
    typer.echo(text, nl=not text.endswith("\n"))
    if any(x.hits for x in exps):
        raise typer.Exit(1)
    _exit_for_unreadable(errors)


def _answer_query(query: str, fmt: ExposureFormat, db: str | None) -> None:
    import json

    from chainwatch.fleet import Fleet

    try:
        sightings = Fleet(db).query(query)
    except ValueError as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(2) from exc
    if fmt is ExposureFormat.json:
        typer.echo(json.dumps({"schema": "chainwatch.fleet-query/1", "query": query,
                               "sightings": [s.__dict__ for s in sightings]}, indent=2))
    else:
        labels = {s.label for s in sightings}
        from chainwatch.output.escape import plain

        typer.echo(plain(
            f"{query}: held by {plural(len(labels), 'recorded environment label')} "
            f"({plural(len(sightings), 'sighting')})" if sightings
            else f"{query}: no recorded environment held it"))
        for s in sightings[:200]:
            typer.echo(plain(f"  {s.recorded_at}  {s.label}  {s.source} ({s.kind})  "
                             f"{s.name}@{s.version} {'dev' if s.dev else 'prod'}  {s.path}"))
    if sightings:
        raise typer.Exit(1)
