"""``chainwatch db``: the known-bad store and verdict memory."""

from __future__ import annotations

from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from chainwatch.cli.app import db_app, err, verdicts_app
from chainwatch.cli.options import (
    DbOpt,
    QuietOpt,
)
from chainwatch.output.words import plural

if TYPE_CHECKING:
    from chainwatch.intel.store import KnownBadStore
    from chainwatch.verdicts import VerdictStore


@db_app.command("import", epilog=(
    "Examples:\n\n"
    "  chainwatch db import all.zip\n\n"
    "  chainwatch db import malicious-packages/osv/"))
def db_import(
    sources: Annotated[list[Path], typer.Argument(
        metavar="SOURCE",
        help="OSV all.zip, a folder tree (e.g. ossf/malicious-packages osv/), or JSON files.")],
    db: DbOpt = None,
    quiet: QuietOpt = False,
    include_suspicious: Annotated[bool, typer.Option(
        "--include-suspicious", metavar="",
        help="Also import chainwatch's exports of *suspicious* verdicts, as known-bad (they "
        "then block). Default: skipped, and counted.")] = False,
) -> None:
    """Load OSV records (MAL-…, GHSA-… and others) for npm into the known-bad store."""
    from rich.progress import Progress, TextColumn, TimeElapsedColumn

    from chainwatch.cli.common import _unreadable
    from chainwatch.incidents.osv import is_suspicious_export
    from chainwatch.intel.store import KnownBadStore, Record, parse_osv, read_osv

    for source in sources:
        if not source.exists():
            _unreadable(str(source), FileNotFoundError(2, "no such file or folder"))
    store = KnownBadStore(db)
    problems = 0
    seen = 0
    suspicious: list[str] = []

    def records() -> Iterator[Record]:
        nonlocal problems, seen
        with Progress(TextColumn("{task.description}"), TimeElapsedColumn(), console=err,
                      disable=quiet or not err.is_terminal) as bar:
            task = bar.add_task("reading OSV records")
            for origin, doc, problem in read_osv(sources):
                seen += 1
                if problem:
                    problems += 1
                    err.print(f"warning: {origin}: {problem}", markup=False)
                    continue
                assert doc is not None
                if not include_suspicious and is_suspicious_export(doc):
                    suspicious.append(str(doc.get("id") or origin))
                    continue
                record = parse_osv(doc, "osv")
                if record is not None:
                    yield record
                if seen % 5000 == 0:
                    bar.update(task, description=f"reading OSV records: {seen}")

    imported = store.import_records(records())
    typer.echo(f"imported {plural(imported, 'npm advisory')} from {plural(seen, 'record')} "
               f"({problems} unreadable); the store holds {plural(store.count(), 'advisory')}")
    if suspicious:
        err.print(f"skipped {plural(len(suspicious), 'record')} exported from a *suspicious* "
                  f"chainwatch verdict ({', '.join(suspicious[:5])}"
                  f"{', …' if len(suspicious) > 5 else ''}): not known-bad; "
                  "--include-suspicious imports them (they then block)",
                  markup=False, soft_wrap=True)
    if imported == 0 and problems:
        raise typer.Exit(2)


@db_app.command("stats", epilog=(
    "Examples:\n\n"
    "  chainwatch db stats\n\n"
    "  chainwatch db stats --db postgresql://cw@db.example.com/cw"))
def db_stats(db: DbOpt = None) -> None:
    """How many advisories the store holds."""
    from chainwatch.db import default_url
    from chainwatch.intel import BuiltinKnownBad
    from chainwatch.intel.store import KnownBadStore

    typer.echo(f"{plural(KnownBadStore(db).count(), 'advisory')} in {db or default_url()}; "
               f"the built-in list adds {plural(len(BuiltinKnownBad()), 'known-bad version')}")


class VerdictsFormat(StrEnum):
    table = "table"
    json = "json"


def _verdict_stores(db: str | None) -> tuple[KnownBadStore, VerdictStore]:
    from chainwatch.intel.store import KnownBadStore
    from chainwatch.verdicts import VerdictStore

    try:
        store = KnownBadStore(db)
    except Exception as exc:
        err.print(f"error: cannot open the database {db or ''}: {exc}", markup=False)
        raise typer.Exit(2) from exc
    return store, VerdictStore(engine=store.engine)


@verdicts_app.command("list", epilog=(
    "Examples:\n\n"
    "  chainwatch db verdicts list --package left-pad"))
def db_verdicts_list(
    package: Annotated[str | None, typer.Option(
        "--package", metavar="NAME", help="Only the verdicts of this package.")] = None,
    fmt: Annotated[VerdictsFormat, typer.Option(
        "--format", "-f", help="Output format.")] = VerdictsFormat.table,
    limit: Annotated[int, typer.Option("--limit", metavar="N", min=1, help="At most this many.")] = 200,
    db: DbOpt = None,
) -> None:
    """Stored verdicts (keyed by the bytes they judged) and chainwatch's own known-bad records."""
    import json as jsonlib

    from chainwatch.output.escape import plain

    store, memory = _verdict_stores(db)
    stored = memory.listed(package, limit)
    records = store.own_records(package)
    if fmt is VerdictsFormat.json:
        typer.echo(jsonlib.dumps({
            "schema": "chainwatch.verdicts/1",
            "verdicts": [{"key": v.key, "package": v.package, "version": v.version,
                          "origin": v.origin, "source": v.document.get("source"),
                          "level": v.level.value, "score": v.score,
                          "scanned_at": v.scanned_at, "summary": v.summary}
                         for v in stored],
            "known_bad": records,
            "removals": memory.removal_log(),
        }, indent=2))
        return
    if not stored and not records:
        typer.echo("no stored verdicts")
        return
    # one aligned column per field (release names vary in length; a very long one is not
    # allowed to push every row to the right)
    releases = [plain(f"{v.package}@{v.version}") for v in stored]
    width = min(max((len(r) for r in releases), default=0), 60)
    for release, v in zip(releases, stored, strict=True):
        typer.echo(f"{release:{width}}  {v.level.value:10} {v.score:3}  {v.origin:8} "
                   f"{v.scanned_at}  {plain(v.key)}")
    if records:
        typer.echo("known-bad records from verdicts (exposure, check and the proxy block these):")
        for r in records:
            typer.echo(plain(f"  {r['id']}  {r['package']}@{r['version']}  {r['published']}"))


@verdicts_app.command("remove", epilog=(
    "Examples:\n\n"
    "  chainwatch db verdicts remove left-pad@1.3.1 --reason 'benign: reviewed'"))
def db_verdicts_remove(
    target: Annotated[str, typer.Argument(
        metavar="TARGET",
        help="name@version (every verdict of it and its CW-VERDICT known-bad record) or a "
             "stored key from `db verdicts list` (an integrity).")],
    reason: Annotated[str, typer.Option(
        "--reason", metavar="TEXT", help="Why the verdict is wrong (recorded with who removed it).")],
    db: DbOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Undo a wrong verdict: remove it from verdict memory and the known-bad store."""
    from chainwatch.output.escape import plain

    if not reason.strip():
        err.print("error: --reason must say why the verdict is wrong", markup=False)
        raise typer.Exit(2)
    store, memory = _verdict_stores(db)
    gone, advisories = memory.remove(target, reason, store.forget)
    if not gone and not advisories:
        hint = ""
        if "@" in target[1:]:
            at = target.rfind("@")
            ids = sorted({a.id for a in store.lookup(target[:at], target[at + 1:])})
            if ids:
                hint = (f"; imported advisories name it: {', '.join(ids[:5])} (remove one with "
                        "`chainwatch db remove ID --reason TEXT`)")
        err.print(plain(f"error: no stored verdict or chainwatch known-bad record matches "
                        f"{target}{hint}"), markup=False, soft_wrap=True)
        raise typer.Exit(2)
    if not quiet:
        err.print(plain(f"removed {plural(len(gone), 'stored verdict')} and "
                        f"{', '.join(advisories) or 'no known-bad record'} for {target}: "
                        f"{' '.join(reason.split())}"), markup=False, soft_wrap=True)


@db_app.command("remove", epilog=(
    "Examples:\n\n"
    "  chainwatch db remove MAL-0000-1A2B3C4D5E6F --reason 'exported from a suspicious verdict'"))
def db_remove(
    advisory: Annotated[str, typer.Argument(
        metavar="ID", help="The advisory's id (MAL-…, GHSA-…, CW-VERDICT-…), as `check` and "
        "`exposure` quote it.")],
    reason: Annotated[str, typer.Option(
        "--reason", metavar="TEXT", help="Why it is removed (recorded with who removed it).")],
    db: DbOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Remove one advisory from the known-bad store (an imported one too)."""
    from chainwatch.output.escape import plain

    if not reason.strip():
        err.print("error: --reason must say why the advisory is removed", markup=False)
        raise typer.Exit(2)
    store, memory = _verdict_stores(db)
    named = store.remove_advisory(advisory)
    if not named:
        err.print(plain(f"error: no advisory {advisory} in the known-bad store"),
                  markup=False, soft_wrap=True)
        raise typer.Exit(2)
    memory.note_removal(advisory, [advisory], reason)
    if not quiet:
        what = ", ".join(f"{n}@{v}" if v else f"{n} (a range)" for n, v in named if n)[:300]
        err.print(plain(f"removed {advisory} ({what or 'no versions'}): "
                        f"{' '.join(reason.split())}; importing the same record again brings "
                        "it back"), markup=False, soft_wrap=True)
