"""``chainwatch scan``."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from chainwatch.cli.app import app, err
from chainwatch.cli.common import (
    _known_bad,
    _nothing_stored,
    _setup_logging,
)
from chainwatch.cli.options import (
    CacheOpt,
    ColorOpt,
    DbOpt,
    OfflineOpt,
    QuietOpt,
    RegistryOpt,
    VerboseOpt,
)
from chainwatch.errors import ChainwatchError, describe_failure
from chainwatch.output.console import ColorMode, output_width, use_color
from chainwatch.specs import redact_credentials

if TYPE_CHECKING:
    from chainwatch.model import Verdict
    from chainwatch.registry import RegistryClient


class Format(StrEnum):
    table = "table"
    json = "json"
    jsonl = "jsonl"
    sarif = "sarif"
    markdown = "markdown"


class FailOn(StrEnum):
    suspicious = "suspicious"
    malicious = "malicious"
    never = "never"


class _NoBar:
    """What the scan asks of a progress bar, doing nothing (no terminal, or -q): rich's
    progress and live-display code is then never imported."""

    def add_task(self, description: str, total: float | None = None) -> int:
        return 0

    def advance(self, task: int, advance: float = 1) -> None:
        return None


@contextmanager
def _progress(show: bool, several: bool) -> Iterator[Any]:
    """A transient spinner (a bar for several targets) on stderr, or ``_NoBar``."""
    if not show:
        yield _NoBar()
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    columns = [SpinnerColumn(), TextColumn("{task.description}")]
    if several:
        columns += [BarColumn(), MofNCompleteColumn()]
    with Progress(*columns, TimeElapsedColumn(), console=err, transient=True) as bar:
        yield bar


def _remember(verdicts: list[Verdict], db: str | None, client: RegistryClient | None,
              quiet: bool, chosen: bool = False) -> None:
    """Every verdict into verdict memory (incidents, the gate), keyed by the bytes it
    judged; a malicious one into the known-bad store too (exposure, check, proxy), but only
    when it speaks for the registry's release: fetched from it, or a local tarball whose
    integrity equals the registry's. A local package.json's name@version is only a claim.
    ``chosen``: judged against ``--against``, so never replacing what memory says."""
    from dataclasses import replace

    from chainwatch.intel.store import KnownBadStore
    from chainwatch.model import Level
    from chainwatch.output.escape import plain
    from chainwatch.registry import RegistryClient
    from chainwatch.verdicts import VerdictStore, registry_match

    def notice(text: str) -> None:
        if not quiet:
            err.print(plain(text), markup=False, soft_wrap=True)

    # one quick question per local tarball: an unreachable registry answers "not confirmed"
    # in seconds, not after the scan client's retries
    asker = (RegistryClient(client.config, client.cache.root, offline=client.offline,
                            timeout=10.0, retries=0) if client is not None else None)
    try:
        store = KnownBadStore(db)
        memory = VerdictStore(engine=store.engine)
        for verdict in verdicts:
            if chosen and not verdict.baseline_chosen:  # whatever a Dask worker sent back
                verdict = replace(verdict, baseline_chosen=True)
            # benign too: the newest judgement by the registry history wins; one against a
            # chosen baseline only where nothing is stored (VerdictStore.keep)
            kept = memory.keep(verdict)
            if (note := kept.note()) is not None:
                notice(f"note: {verdict.target}: {note}")
            if verdict.level is not Level.MALICIOUS:
                continue
            match = registry_match(verdict, asker.packument if asker is not None else None)
            if not match.confirmed:
                notice(f"not recorded as known-bad: {verdict.source} is not the registry's "
                       f"{verdict.target} ({match.reason}); its verdict is kept for its own "
                       "bytes only")
                continue
            rid = store.remember(verdict)
            if rid:
                notice(f"remembered {verdict.target} as {rid} in the known-bad store")
    except Exception as exc:
        err.print(f"warning: could not store the verdict: {plain(str(exc))}", markup=False)
    finally:
        if asker is not None:
            asker.close()


@app.command(epilog=(
    "Examples:\n\n"
    "  chainwatch scan express@4.21.2\n\n"
    "  chainwatch scan ./left-pad-1.3.0.tgz --against left-pad@1.2.0 --format json"))
def scan(
    targets: Annotated[list[str], typer.Argument(
        metavar="TARGET",
        help="name@version, name (latest), a .tgz file or an unpacked package folder.")],
    against: Annotated[str | None, typer.Option(
        "--against", metavar="SPEC", help="Baseline: name@version, .tgz, folder, or 'none'. "
                          "Default for name@version: the previous version by semver.")] = None,
    packument: Annotated[Path | None, typer.Option(
        "--packument", metavar="FILE",
        help="Use this packument JSON file instead of asking the registry.")] = None,
    fmt: Annotated[Format, typer.Option(
        "--format", "-f", metavar="FORMAT",
        help="Output format: table, json, jsonl, sarif or markdown.")] = Format.table,
    fail_on: Annotated[FailOn, typer.Option(
        "--fail-on", metavar="LEVEL",
        help="Exit 1 when a verdict is at least this level: suspicious, malicious or never.")
    ] = FailOn.suspicious,
    jobs: Annotated[int, typer.Option("--jobs", "-j", metavar="N", min=1, max=64,
                                      help="Targets scanned in parallel.")] = 4,
    rules_dir: Annotated[list[Path] | None, typer.Option(
        "--rules", metavar="DIR", help="Extra folder of rule files (repeatable).")] = None,
    show_all: Annotated[bool, typer.Option(
        "--all", metavar="", help="Table: also show findings the baseline already had.")] = False,
    sandbox: Annotated[bool, typer.Option(
        "--sandbox", metavar="", help="Also run install scripts and entry points in a bubblewrap sandbox "
        "with bait secrets and record what they do (see 'Dynamic analysis').")] = False,
    registry: RegistryOpt = None,
    cache_dir: CacheOpt = None,
    offline: OfflineOpt = False,
    db: DbOpt = None,
    remember: Annotated[bool, typer.Option(
        "--remember/--no-remember", metavar="",
        help="Store flagged verdicts in the database: malicious ones in the known-bad store "
        "(exposure finds them), all in verdict memory (incidents, the gate).")] = True,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = 0,
    color: ColorOpt = ColorMode.auto,
    dask: Annotated[str | None, typer.Option(
        "--dask", metavar="ADDRESS", help="Scan each target as one task on this Dask scheduler "
        "(tcp://host:8786), or 'local' for a cluster of this machine's cores "
        "(pip install 'chainwatch\\[dask]').")] = None,
) -> None:
    """Analyse releases and give a verdict with evidence, diffed against the previous version."""
    import logging
    from concurrent.futures import ThreadPoolExecutor, as_completed

    from chainwatch.analysis.rules import load_rules
    from chainwatch.model import Level, Verdict
    from chainwatch.output.escape import plain
    from chainwatch.output.jsonout import Failed, Outcome, render_json, render_jsonl
    from chainwatch.output.table import render as render_table
    from chainwatch.output.table import safe
    from chainwatch.registry import NpmConfig, RegistryClient
    from chainwatch.scan import Scanner, read_packument_file

    _setup_logging(verbose)
    log = logging.getLogger("chainwatch.scan")
    try:
        rules = load_rules(rules_dir or [])
        doc = read_packument_file(packument) if packument else None
        client = RegistryClient(NpmConfig.load(registry), cache_dir, offline=offline)
    except ChainwatchError as exc:
        err.print(f"[red]error:[/] {exc}", markup=True)
        raise typer.Exit(exc.exit_code) from exc

    def notice(message: str) -> None:  # which version a dist-tag or range chose
        err.print(plain(f"note: {message}").replace("\n", " "), markup=False)

    scanner = Scanner(client, rules, known_bad=_known_bad(db), sandbox=sandbox,
                      notice=None if quiet else notice)
    outcomes: dict[int, Outcome] = {}

    def one(spec: str) -> Verdict:
        log.debug("scanning %s (baseline: %s)", spec, against or "default")
        verdict = scanner.scan(spec, against, doc)
        log.debug("%s: %s, score %d, %d findings, %.2f s", verdict.target, verdict.level.value,
                  verdict.score, len(verdict.findings), verdict.elapsed_s)
        return verdict

    # on a terminal only: a spinner while one (maybe large) package is fetched and analysed,
    # a bar for several; transient, on stderr, never in a pipe
    show_progress = not quiet and err.is_terminal
    description = "scanning" if len(targets) > 1 else f"scanning {safe(targets[0])}"
    def said(i: int) -> None:
        failure = outcomes[i]
        if isinstance(failure, Failed):
            said = failure.error if failure.error.startswith(failure.target) else (
                f"{failure.target}: {failure.error}")
            err.print(plain(f"error: {said}"), markup=False)

    with client, scanner, _progress(show_progress, len(targets) > 1) as bar:
        task = bar.add_task(description, total=len(targets))
        if dask is not None:  # each target one task on the cluster; memory written here
            from chainwatch.cli.scale import scan_on_dask

            for i, outcome in scan_on_dask(dask, targets, against, doc, client.config,
                                           cache_dir, offline, db, rules_dir, sandbox,
                                           None if quiet else notice):
                outcomes[i] = outcome
                said(i)
                bar.advance(task)
        else:
            with ThreadPoolExecutor(max_workers=min(jobs, len(targets))) as pool:
                futures = {pool.submit(one, spec): i for i, spec in enumerate(targets)}
                for future in as_completed(futures):
                    i = futures[future]
                    try:
                        outcomes[i] = future.result()
                    except Exception as exc:  # one target's failure must not hide the others
                        if (os.environ.get("CHAINWATCH_DEBUG") == "1"
                                and not isinstance(exc, ChainwatchError)):
                            raise
                        message, code = describe_failure(exc)
                        outcomes[i] = Failed(redact_credentials(targets[i]), message, code)
                    said(i)
                    bar.advance(task)
    results = [outcomes[i] for i in range(len(targets))]
    ordered = [o for o in results if isinstance(o, Verdict)]
    failed = [o for o in results if isinstance(o, Failed)]
    # a benign verdict is stored too (it replaces an earlier judgement of the same bytes), but
    # a benign scan alone creates no database
    if remember and ordered and (any(v.level is not Level.BENIGN for v in ordered)
                                 or not _nothing_stored(db)):
        _remember(ordered, db, client, quiet, chosen=against is not None)
    out = ""
    if fmt is Format.json:
        out = render_json(results)  # one shape: a chainwatch.scan-run/1 object, failures included
    elif fmt is Format.jsonl:
        out = render_jsonl(results)
    elif ordered and fmt is Format.table:
        out = render_table(ordered, color=use_color(color, sys.stdout), show_all=show_all,
                           width=output_width(sys.stdout))
    elif ordered:
        from chainwatch.output import FORMATS  # every format's module: only for sarif, markdown

        out = FORMATS[fmt.value](ordered)
    if out:
        sys.stdout.write(out if out.endswith("\n") else out + "\n")
    # as check and exposure: something flagged is exit 1 whatever else failed (a CI script
    # keyed on 1 must not miss a malicious result because another target was unreadable)
    if fail_on is not FailOn.never:
        threshold = Level(fail_on.value).rank
        if any(v.level.rank >= threshold for v in ordered):
            raise typer.Exit(1)
    if failed:
        raise typer.Exit(max(f.exit_code for f in failed))
