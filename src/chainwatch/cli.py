"""The ``chainwatch`` command line (see DESIGN.md for the contract)."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from enum import StrEnum
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from chainwatch import __version__, interrupt
from chainwatch.errors import ChainwatchError, describe_failure, one_line
from chainwatch.gate.policy import Policy
from chainwatch.intel.base import KnownBadSource
from chainwatch.model import Environment, Level, Verdict
from chainwatch.output.console import ColorMode, output_width, use_color
from chainwatch.output.helptypes import quiet_type_column
from chainwatch.output.words import plural

T = TypeVar("T")

if TYPE_CHECKING:
    from chainwatch.gate.scanning import ScanGate
    from chainwatch.intel.store import KnownBadStore
    from chainwatch.registry import RegistryClient
    from chainwatch.verdicts import VerdictStore

quiet_type_column()
app = typer.Typer(
    name="chainwatch",
    help="Detect, expose and prevent compromised npm releases.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
rules_app = typer.Typer(help="Inspect the detection rules.", no_args_is_help=True)
app.add_typer(rules_app, name="rules")
db_app = typer.Typer(help="The known-bad store (OSV records and chainwatch's own).",
                     no_args_is_help=True)
app.add_typer(db_app, name="db")
verdicts_app = typer.Typer(help="Verdict memory: list stored verdicts, remove a wrong one.",
                           no_args_is_help=True)
db_app.add_typer(verdicts_app, name="verdicts")
policy_app = typer.Typer(help="The install policy shared by check and the proxy.",
                         no_args_is_help=True)
app.add_typer(policy_app, name="policy")
err = Console(stderr=True, highlight=False, soft_wrap=True)


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


def _version(value: bool) -> None:
    if value:
        typer.echo(f"chainwatch {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[bool, typer.Option("--version", metavar="", callback=_version, is_eager=True,
                                          help="Show the version and exit.")] = False,
) -> None:
    """chainwatch: analyse npm releases against their previous version and publisher history."""


RegistryOpt = Annotated[str | None, typer.Option(
    "--registry", metavar="URL", help="Registry URL (default: from .npmrc / npm_config_registry).")]
CacheOpt = Annotated[Path | None, typer.Option(
    "--cache-dir", metavar="DIR", help="Cache folder (default: the user cache dir).")]
OfflineOpt = Annotated[bool, typer.Option("--offline", metavar="", help="Use only the cache; no network.")]
QuietOpt = Annotated[bool, typer.Option("-q", "--quiet", metavar="", help="Print only the result.")]
VerboseOpt = Annotated[int, typer.Option(
    "-v", "--verbose", count=True, metavar="",
    help="Log chainwatch's own steps to stderr; -vv adds the HTTP libraries' debug lines.")]
ColorOpt = Annotated[ColorMode, typer.Option(
    "--color", help="Colour tables: auto (a terminal, unless NO_COLOR is set), always or never.")]
DbOpt = Annotated[str | None, typer.Option(
    "--db", metavar="URL",
    help="Database URL (default: $CHAINWATCH_DB or a SQLite file in the user data dir).")]


def _remember(verdicts: list[Verdict], db: str | None, client: RegistryClient | None,
              quiet: bool) -> None:
    """Every flagged verdict into verdict memory (incidents, the gate), keyed by the bytes it
    judged; a malicious one into the known-bad store too (exposure, check, proxy), but only
    when it speaks for the registry's release: fetched from it, or a local tarball whose
    integrity equals the registry's. A local package.json's name@version is only a claim."""
    from chainwatch.intel.store import KnownBadStore
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
            if verdict.level is not Level.BENIGN:
                memory.put(verdict)
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


def _known_bad(db: str | None) -> KnownBadSource:
    """The database (when it can be opened) and the built-in list, asked together."""
    from chainwatch.intel import BuiltinKnownBad
    from chainwatch.intel.store import CombinedKnownBad, KnownBadStore

    store = _open_db(KnownBadStore, db, "known-bad database", "using the built-in list")
    return CombinedKnownBad(store, BuiltinKnownBad()) if store else BuiltinKnownBad()


def _open_db(factory: Callable[[str | None], T], db: str | None, what: str,
             instead: str) -> T | None:
    """A database-backed store; with no --db given, a broken default database is a warning
    (the command goes on without it), with --db an error (exit 2)."""
    try:
        return factory(db)
    except Exception as exc:
        if db:
            err.print(f"error: cannot open the database {db}: {one_line(exc)}", markup=False)
            raise typer.Exit(2) from exc
        err.print(f"warning: {what} unavailable ({one_line(exc)}); {instead}", markup=False)
        return None


def _unreadable(what: str, exc: BaseException) -> NoReturn:
    """A file named on the command line that cannot be read: one line naming it, exit 2."""
    if isinstance(exc, UnicodeError):
        reason = "not UTF-8 text"
    elif isinstance(exc, OSError):
        reason = exc.strerror or one_line(exc)
    else:
        reason = one_line(exc)
    err.print(f"error: {what}: cannot read: {reason}", markup=False, soft_wrap=True)
    raise typer.Exit(2) from exc


def _http_urls(param: str) -> Callable[[list[str] | None], list[str] | None]:
    """A callback that accepts only http(s) URLs with a host (alert destinations); the URL is
    a secret, so the error never repeats it."""
    from urllib.parse import urlsplit

    def check(values: list[str] | None) -> list[str] | None:
        for value in values or []:
            try:
                parts = urlsplit(value)
                ok = parts.scheme in ("http", "https") and bool(parts.hostname)
            except ValueError:
                ok = False
            if not ok:
                raise typer.BadParameter("wants an http(s)://host/... URL", param_hint=param)
        return values
    return check


def _conflict(first: str, second: str) -> NoReturn:
    err.print(f"error: {first} and {second} cannot be used together", markup=False)
    raise typer.Exit(2)


def _setup_logging(verbose: int) -> None:
    from chainwatch.output.console import setup_logging

    setup_logging(verbose)


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
    fmt: Annotated[Format, typer.Option("--format", "-f", help="Output format.")] = Format.table,
    fail_on: Annotated[FailOn, typer.Option(
        "--fail-on", help="Exit 1 when a verdict is at least this level.")] = FailOn.suspicious,
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
) -> None:
    """Analyse releases and give a verdict with evidence, diffed against the previous version."""
    import os

    from rich.progress import SpinnerColumn

    from chainwatch.analysis.rules import load_rules
    from chainwatch.output import FORMATS
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
    columns = [SpinnerColumn(), TextColumn("{task.description}")]
    if len(targets) > 1:
        columns += [BarColumn(), MofNCompleteColumn()]
    description = "scanning" if len(targets) > 1 else f"scanning {safe(targets[0])}"
    with client, scanner, Progress(*columns, TimeElapsedColumn(), console=err, transient=True,
                                   disable=not show_progress) as bar:
        task = bar.add_task(description, total=len(targets))
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
                    outcomes[i] = Failed(targets[i], message, code)
                failure = outcomes[i]
                if isinstance(failure, Failed):
                    said = failure.error if failure.error.startswith(failure.target) else (
                        f"{failure.target}: {failure.error}")
                    err.print(plain(f"error: {said}"), markup=False)
                bar.advance(task)
    results = [outcomes[i] for i in range(len(targets))]
    ordered = [o for o in results if isinstance(o, Verdict)]
    failed = [o for o in results if isinstance(o, Failed)]
    if remember and any(v.level is not Level.BENIGN for v in ordered):
        _remember(ordered, db, client, quiet)
    out = ""
    if fmt is Format.json:
        out = render_json(results)  # one shape: a chainwatch.scan-run/1 object, failures included
    elif fmt is Format.jsonl:
        out = render_jsonl(results)
    elif ordered and fmt is Format.table:
        out = render_table(ordered, color=use_color(color, sys.stdout), show_all=show_all,
                           width=output_width(sys.stdout))
    elif ordered:
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


class InventoryFormat(StrEnum):
    table = "table"
    json = "json"
    cyclonedx = "cyclonedx"


class ExposureFormat(StrEnum):
    table = "table"
    json = "json"
    sarif = "sarif"
    markdown = "markdown"


def _collect(paths: list[Path], exclude: list[str] | None, quiet: bool,
             unreadable: str = "error") -> tuple[list[Environment], list[dict[str, str]]]:
    """Environments found under the paths, and per-file errors: each is reported on stderr
    (as ``unreadable``: error, or warning under ``check --allow-unreadable``) and the walk
    goes on; the command then exits 2 unless it flagged something (exit 1)."""
    from chainwatch.inventory.walk import FileError, walk
    from chainwatch.output.escape import one_line as one_line_text

    envs: list[Environment] = []
    errors: list[dict[str, str]] = []
    with err.status("looking for lockfiles, node_modules and manifests …") as status:
        def progress(folder: str) -> None:
            if not quiet:
                status.update(f"looking in {folder[-80:]}")
        for found in walk(paths, exclude or [], progress=progress):
            if isinstance(found, FileError):
                errors.append({"source": found.source, "error": found.message})
                err.print(f"{unreadable}: {one_line_text(found.source)}: "
                          f"{one_line_text(found.message)}",
                          markup=False, soft_wrap=True)
            else:
                envs.append(found)
    return envs, errors


def _exit_for_unreadable(errors: list[dict[str, str]]) -> None:
    """A file that could not be read leaves the answer open: exit 2 (after everything else
    was reported), never 0 as if it were clean."""
    if errors:
        if len(errors) > 1:
            err.print(f"{len(errors)} files could not be read (see above)", markup=False,
                      soft_wrap=True)
        raise typer.Exit(2)


PathsArg = Annotated[list[Path], typer.Argument(metavar="PATH", help="Folders or files to inventory.")]
RecordOpt = Annotated[str | None, typer.Option(
    "--record", metavar="LABEL",
    help="Remember these environments under a label (repo@commit, image digest).")]


def _record(label: str | None, envs: list[Environment], db: str | None) -> None:
    if not label:
        return
    from chainwatch.fleet import Fleet

    count = Fleet(db).record(label, envs)
    err.print(f"recorded {plural(len(envs), 'environment')} ({plural(count, 'package')}) as "
              f"{label}", markup=False)
ExcludeOpt = Annotated[list[str] | None, typer.Option(
    "--exclude", metavar="GLOB", help="Glob of paths to skip (repeatable).")]


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
    """The environments found under PATHS: a line per environment with its package counts
    (table), or every package with its dependency paths (--format json, cyclonedx)."""
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


class CheckFormat(StrEnum):
    table = "table"
    json = "json"
    sarif = "sarif"
    github = "github"


PolicyOpt = Annotated[Path | None, typer.Option("--policy", metavar="FILE", help="Policy TOML file.")]
MinAgeOpt = Annotated[str | None, typer.Option(
    "--min-age", metavar="DURATION", help="Minimum release age, e.g. 48h or 7d (overrides the policy).")]
ScanOpt = Annotated[bool, typer.Option(
    "--scan/--no-scan", metavar="", help="Apply the scan rule: scan releases within the policy's scan "
    "window once (verdicts are kept in the database by integrity).")]


def _scan_gate(policy: Policy, client: RegistryClient, db: str | None,
               workers: int = 2) -> ScanGate:
    from chainwatch.gate.scanning import ScanGate
    from chainwatch.intel.store import CombinedKnownBad
    from chainwatch.scan import Scanner
    from chainwatch.verdicts import VerdictStore

    store = _open_db(VerdictStore, db, "verdict memory", "verdicts are kept in memory")
    # the known-bad rule is separate; the scan rule judges the code and metadata alone
    return ScanGate(Scanner(client, known_bad=CombinedKnownBad(), workers=1,
                            sandbox=policy.scan_sandbox), store,
                    policy.scan_window, workers=workers)


def _policy(policy_file: Path | None, min_age: str | None) -> Policy:
    from chainwatch.gate.policy import load_policy

    try:
        policy = load_policy(policy_file, min_age)
    except ChainwatchError as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(exc.exit_code) from exc
    except (OSError, UnicodeError) as exc:
        _unreadable(f"--policy {policy_file}", exc)
    for gone in policy.expired_exceptions():
        err.print(f"warning: policy exception {gone.package}@{gone.range} expired on "
                  f"{gone.expires.isoformat()} and no longer applies ({gone.reason})"[:400],
                  markup=False, soft_wrap=True)
    return policy


@policy_app.command("show", epilog=(
    "Examples:\n\n"
    "  chainwatch policy show --policy chainwatch.toml --min-age 7d"))
def policy_show(policy_file: PolicyOpt = None, min_age: MinAgeOpt = None) -> None:
    """Print the effective policy (built-in defaults, the file, then flags) as TOML."""
    import tomli_w

    typer.echo(tomli_w.dumps(_policy(policy_file, min_age).to_toml()), nl=False)


@app.command(epilog=(
    "Examples:\n\n"
    "  chainwatch check . --policy chainwatch.toml\n\n"
    "  chainwatch check . --min-age 7d --format github"))
def check(
    paths: PathsArg,
    policy_file: PolicyOpt = None,
    min_age: MinAgeOpt = None,
    fmt: Annotated[CheckFormat, typer.Option(
        "--format", "-f", help="Output format (github: workflow annotations).")] = CheckFormat.table,
    exclude: ExcludeOpt = None,
    registry: RegistryOpt = None,
    cache_dir: CacheOpt = None,
    offline: OfflineOpt = False,
    db: DbOpt = None,
    scan: ScanOpt = True,
    quiet: QuietOpt = False,
    color: ColorOpt = ColorMode.auto,
    allow_unreadable: Annotated[bool, typer.Option(
        "--allow-unreadable", metavar="", help="Report a lockfile that cannot be read as a warning and "
        "judge the rest (default: exit 2).")] = False,
    strict: Annotated[bool, typer.Option(
        "--strict", metavar="", help="Block a version whose age, scripts, trust or scan could not be "
        "judged because the registry was unreachable or the time ran out (policy: offline = "
        "\"block\").")] = False,
    timeout: Annotated[float, typer.Option(
        "--timeout", metavar="SECONDS", min=1.0,
        help="Stop judging after this long; versions not judged by then are reported "
        "(blocked with --strict).")] = 120.0,
) -> None:
    """Check every resolved version in the lockfiles under PATHS against the policy."""
    from chainwatch.gate.check import Checker
    from chainwatch.output import check as out
    from chainwatch.registry import NpmConfig, RegistryClient

    policy = _policy(policy_file, min_age)
    if strict:
        from dataclasses import replace

        policy = replace(policy, offline="block")
    envs, errors = _collect(paths, exclude, quiet,
                            unreadable="warning" if allow_unreadable else "error")
    envs = [e for e in envs if e.kind != "package.json" or any(p.exact for p in e.packages)]
    from chainwatch.gate.environments import merge_projects

    envs = merge_projects(envs)  # a project's lockfile, node_modules and manifest: one place
    if not envs:
        # fail closed: a gate that found nothing to judge has not passed anything
        err.print("error: nothing to check: no lockfile, node_modules folder or pinned manifest "
                  f"under {', '.join(str(p) for p in paths)}", markup=False, soft_wrap=True)
        raise typer.Exit(2)
    client = RegistryClient(NpmConfig.load(registry), cache_dir, offline=offline,
                            packument_ttl=policy.packument_ttl.total_seconds())
    with client:
        # as many scans at once as versions checked at once: none waits in the queue
        gate = _scan_gate(policy, client, db, workers=8) if scan else None
        checker = Checker(policy, client, _known_bad(db), scans=gate)
        try:
            label = "checking versions against the policy (scanning recent releases)"
            with err.status(f"{label} …") as status:
                def progress(done: int, total: int) -> None:
                    if not quiet:
                        status.update(f"{label}: {done}/{total} …")
                placed = checker.check(envs, timeout=timeout, progress=progress)
        finally:
            if gate is not None:
                gate.close()
    checked = len({(p.name, p.version) for e in envs for p in e.packages if p.exact})
    if fmt is CheckFormat.json:
        text = out.check_json(placed, checked, errors)
    elif fmt is CheckFormat.sarif:
        text = out.check_sarif(placed, errors)
    elif fmt is CheckFormat.github:
        text = out.check_github(placed, errors)
    else:
        text = out.check_table(placed, checked, output_width(sys.stdout),
                               use_color(color, sys.stdout))
    if text:
        typer.echo(text, nl=not text.endswith("\n"))
    if any(p.decision.action == "block" for p in placed):
        raise typer.Exit(1)
    if not allow_unreadable:
        _exit_for_unreadable(errors)


@app.command(epilog=(
    "Examples:\n\n"
    "  chainwatch proxy --listen 127.0.0.1:4873 --min-age 48h\n\n"
    "  npm config set registry http://127.0.0.1:4873/"))
def proxy(
    upstream: Annotated[str, typer.Option("--upstream", metavar="URL", help="The registry to filter.")] = (
        "https://registry.npmjs.org/"),
    listen: Annotated[str, typer.Option("--listen", metavar="HOST:PORT", help="HOST:PORT to serve on.")] = (
        "127.0.0.1:4873"),
    policy_file: PolicyOpt = None,
    min_age: MinAgeOpt = None,
    db: DbOpt = None,
    scan: ScanOpt = True,
    cache_ttl: Annotated[str, typer.Option(
        "--cache-ttl", metavar="DURATION",
        help="How long a cached packument is used before upstream is asked "
        "again (with its ETag); 0s asks every time. The policy is applied to every answer.")] = "10s",
    cache_dir: CacheOpt = None,
    tarball_hosts: Annotated[list[str] | None, typer.Option(
        "--tarball-hosts", metavar="HOST",
        help="Another host tarballs may be fetched from (host, host:port or "
        "scheme://host\\[:port]; repeatable). The upstream's own origin always is.")] = None,
    public_url: Annotated[str | None, typer.Option(
        "--public-url", metavar="URL", help="The URL clients reach the proxy at, for rewritten tarball URLs "
        "(required when listening beyond loopback).")] = None,
    token_file: Annotated[Path | None, typer.Option(
        "--token-file", metavar="FILE", help="File holding the token that /-/chainwatch/decisions asks for "
        "(or env CHAINWATCH_PROXY_TOKEN).")] = None,
    memory: Annotated[str, typer.Option(
        "--memory", metavar="MB", help="One memory budget (MB) for buffered packuments, the packument cache "
        "and on-demand scans.")] = "768",
    verbose: VerboseOpt = False,
) -> None:
    """Serve an npm-compatible registry that hides and refuses what the policy blocks."""
    import uvicorn

    from chainwatch.gate.budget import MemoryBudget
    from chainwatch.gate.check import Checker
    from chainwatch.gate.policy import parse_duration
    from chainwatch.gate.proxy import Proxy, loopback_host

    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        err.print(f"error: --listen wants HOST:PORT with a port from 1 to 65535, not {listen!r}",
                  markup=False)
        raise typer.Exit(2)
    local = loopback_host(host)
    if not local and not public_url:
        err.print(f"error: listening on {host} needs --public-url (the URL clients use), so that "
                  "tarball URLs never come from a request's Host header", markup=False)
        raise typer.Exit(2)
    token = os.environ.get("CHAINWATCH_PROXY_TOKEN") or None
    if token_file is not None:
        try:
            token = token_file.read_text(encoding="utf-8").strip() or None
        except OSError as exc:
            err.print(f"error: --token-file: {exc}", markup=False)
            raise typer.Exit(2) from exc
    if not memory.isdigit() or int(memory) < 64:
        err.print(f"error: --memory wants a number of MB (at least 64), not {memory!r}",
                  markup=False)
        raise typer.Exit(2)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s",
                        stream=sys.stderr)
    from chainwatch.output.console import quiet_libraries

    logging.getLogger("chainwatch").setLevel(logging.NOTSET)  # services log their steps at INFO
    quiet_libraries(verbose)
    from chainwatch.registry import NpmConfig, RegistryClient

    policy = _policy(policy_file, min_age)
    try:
        fresh = parse_duration(cache_ttl).total_seconds()
    except ChainwatchError as exc:
        err.print(f"error: --cache-ttl: {exc}", markup=False)
        raise typer.Exit(2) from exc
    # scans fetch from upstream with the operator's npm credentials, not the client's
    client = RegistryClient(NpmConfig.load(upstream), cache_dir)
    try:
        server = Proxy(upstream, Checker(policy, None, _known_bad(db),
                                         scans=_scan_gate(policy, client, db) if scan else None),
                       fresh_seconds=fresh, tarball_hosts=tuple(tarball_hosts or ()),
                       public_url=public_url, token=token, open_decisions=local,
                       budget=MemoryBudget(int(memory) * 1024 * 1024))
    except ValueError as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(2) from exc
    from chainwatch.gate.listen import listen_socket

    try:  # bound here, so that a busy port or an unknown host is one line and exit 2
        sock = listen_socket(host, int(port))
    except OSError as exc:
        err.print(f"error: --listen {listen}: cannot listen there: "
                  f"{exc.strerror or one_line(exc)}", markup=False)
        raise typer.Exit(2) from exc
    err.print(f"chainwatch proxy on http://{listen}/ filtering {upstream} — point clients at it "
              f"with: npm config set registry http://{listen}/", markup=False)
    # a signal: uvicorn stops taking requests and lets those in flight end, for GRACE seconds
    config = uvicorn.Config(server.app, log_level="info" if verbose else "warning")

    class Server(uvicorn.Server):
        signalled = False

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            self.signalled = True
            interrupt.arm()  # a request still scanning cannot hold the shutdown
            super().handle_exit(sig, frame)

    served = Server(config)
    served.run(sockets=[sock])
    if served.signalled:
        interrupt.finish()


class AlertOn(StrEnum):
    suspicious = "suspicious"
    malicious = "malicious"


class LogFormat(StrEnum):
    text = "text"
    json = "json"


def _setup_service_logging(fmt: LogFormat, verbose: int) -> None:
    import json as jsonlib

    class JsonFormatter(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            return jsonlib.dumps({"time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
                                  "level": record.levelname.lower(), "logger": record.name,
                                  "message": record.getMessage()})

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt is LogFormat.json else
                         logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler],
                        force=True)
    from chainwatch.output.console import quiet_libraries

    logging.getLogger("chainwatch").setLevel(logging.NOTSET)  # services log their steps at INFO
    quiet_libraries(verbose)


@app.command(epilog=(
    "Examples:\n\n"
    "  chainwatch watch --from . --webhook https://hooks.example.com/cw\n\n"
    "  chainwatch watch --status"))
def watch(
    packages_file: Annotated[Path | None, typer.Option(
        "--packages", metavar="FILE", help="A file with one package name per line.")] = None,
    from_paths: Annotated[list[Path] | None, typer.Option(
        "--from", metavar="PATH", help="Watch every package these environments hold (lockfiles, "
        "node_modules, SBOMs, images); repeatable.")] = None,
    top: Annotated[int, typer.Option("--top", min=0, metavar="N",
                                     help="Watch the N most-downloaded packages.")] = 0,
    interval: Annotated[str, typer.Option(
        "--interval", metavar="DURATION", help="Poll interval of a package.")] = "60s",
    hot_interval: Annotated[str, typer.Option(
        "--hot-interval", metavar="DURATION",
        help="Poll interval of hot packages (popular or recently active).")] = "15s",
    budget: Annotated[int, typer.Option(
        "--budget", metavar="N", help="Registry requests per minute, all packages together.")] = 600,
    webhook: Annotated[list[str] | None, typer.Option(
        "--webhook", envvar="CHAINWATCH_WEBHOOK", metavar="URL",
        callback=_http_urls("--webhook"),
        help="POST each alert as JSON to this URL (a secret: never logged); repeatable.")] = None,
    slack: Annotated[list[str] | None, typer.Option(
        "--slack", envvar="CHAINWATCH_SLACK", metavar="URL", callback=_http_urls("--slack"),
        help="A Slack-compatible incoming webhook URL (a secret); repeatable.")] = None,
    feed: Annotated[Path | None, typer.Option(
        "--feed", metavar="FILE", help="Append each alert as a JSON line to this file.")] = None,
    smtp: Annotated[str | None, typer.Option(
        "--smtp", metavar="URL", envvar="CHAINWATCH_SMTP",
        help="E-mail alerts: smtp\\[s]://\\[user:pass@]host\\[:port]?from=ADDR&to=ADDR.")] = None,
    smtp_insecure: Annotated[bool, typer.Option(
        "--smtp-insecure", metavar="", help="Allow the SMTP login over a connection without TLS.")] = False,
    max_scan_attempts: Annotated[int, typer.Option(
        "--max-scan-attempts", metavar="N", min=1,
        help="Scans of a release that fail before a scan-failed alert.")] = 3,
    alert_on: Annotated[AlertOn, typer.Option(
        "--alert-on", help="Alert on verdicts at least this level.")] = AlertOn.suspicious,
    changes: Annotated[str | None, typer.Option(
        "--changes", metavar="URL",
        help="Follow this CouchDB-style _changes feed as well as polling.")] = None,
    metrics_port: Annotated[int, typer.Option(
        "--metrics-port", min=0, max=65535, metavar="PORT",
        help="Serve Prometheus /metrics on this port (0: off).")] = 0,
    once: Annotated[bool, typer.Option(
        "--once", metavar="", help="One pass (poll, scan, deliver), then exit.")] = False,
    status: Annotated[bool, typer.Option("--status", metavar="", help="Print the watcher's state.")] = False,
    registry: RegistryOpt = None,
    cache_dir: CacheOpt = None,
    db: DbOpt = None,
    policy_file: PolicyOpt = None,
    log_format: Annotated[LogFormat, typer.Option(
        "--log-format", help="Log lines as text or JSON objects.")] = LogFormat.text,
    verbose: VerboseOpt = False,
) -> None:
    """Follow the registry: scan each new release of the watched packages and raise alerts."""
    import json as jsonlib
    import signal
    import threading

    from chainwatch.db import connect
    from chainwatch.fleet import Fleet
    from chainwatch.gate.policy import parse_duration
    from chainwatch.registry import NpmConfig, RegistryClient
    from chainwatch.scan import Scanner
    from chainwatch.verdicts import VerdictStore
    from chainwatch.watch.changes import ChangesFeed
    from chainwatch.watch.redact import REDACTOR
    from chainwatch.watch.sinks import (
        FeedSink,
        LogSink,
        Sink,
        SlackSink,
        SmtpSink,
        WebhookSink,
    )
    from chainwatch.watch.state import WatchState
    from chainwatch.watch.watcher import WatchConfig, Watcher
    from chainwatch.watch.watchlist import build_watchlist, top_packages

    if status and once:
        _conflict("--status", "--once")
    try:
        engine = connect(db)
    except Exception as exc:
        err.print(f"error: cannot open the database {db or ''}: {exc}", markup=False)
        raise typer.Exit(2) from exc
    state = WatchState(engine)
    if status:
        typer.echo(jsonlib.dumps(state.status(), indent=2))
        return
    _setup_service_logging(log_format, verbose)
    try:
        if packages_file is None and not from_paths and not top and (kept := state.watched()):
            # the database remembers the watchlist of earlier runs: go on watching it
            names = kept
            err.print(f"watching the {len(kept)} packages this database already holds",
                      markup=False)
        else:
            names = build_watchlist(packages_file, from_paths or [], top)
        config = WatchConfig(interval=parse_duration(interval).total_seconds(),
                             hot_interval=parse_duration(hot_interval).total_seconds(),
                             budget=budget, alert_on=Level(alert_on.value),
                             max_scan_attempts=max_scan_attempts)
    except ChainwatchError as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(exc.exit_code) from exc
    except (OSError, UnicodeError) as exc:
        _unreadable(f"--packages {packages_file}", exc)
    sinks: list[Sink] = [LogSink()]
    sinks += [WebhookSink(u) for u in webhook or []]
    sinks += [SlackSink(u) for u in slack or []]
    if feed is not None:
        sinks.append(FeedSink(feed))
    if smtp:
        try:
            sinks.append(SmtpSink(smtp, insecure=smtp_insecure))
        except ValueError as exc:
            err.print(f"error: {exc}", markup=False)
            raise typer.Exit(2) from exc
    for handler in logging.getLogger().handlers:  # sink URLs are secrets, whoever logs them
        handler.addFilter(REDACTOR)
    client = RegistryClient(NpmConfig.load(registry), cache_dir)
    sandbox = _policy(policy_file, None).scan_sandbox if policy_file else False
    watcher = Watcher(state, client, Scanner(client, known_bad=_known_bad(db), sandbox=sandbox),
                      VerdictStore(engine=engine), sinks, config, fleet=Fleet(db))
    added = watcher.watch(names, hot=set(top_packages(100)))
    logging.getLogger("chainwatch.watch").info(
        "watching %d packages (%d new), every %.0f s (hot: %.0f s), %d requests/min, "
        "alerts to %s", len(names), added, watcher.interval, config.hot_interval, budget,
        ", ".join(s.name for s in sinks))
    if metrics_port:
        try:
            watcher.metrics.serve(metrics_port)
        except OSError as exc:
            err.print(f"error: --metrics-port {metrics_port}: cannot serve there: "
                      f"{exc.strerror or one_line(exc)}", markup=False)
            raise typer.Exit(2) from exc
    if once:
        typer.echo(jsonlib.dumps(watcher.run_once()))
        return
    stop = threading.Event()

    def stopping(*_: object) -> None:  # finish the pass in hand, for GRACE seconds at most
        stop.set()
        interrupt.arm()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stopping)
    extra = []
    if changes:
        follower = ChangesFeed(changes, state, set(names))
        extra.append((follower.follow_once, "changes"))
    watcher.run(stop, extra=extra)
    if stop.is_set():
        interrupt.finish()


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
        "--format", "-f",
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
        listing = ", ".join(f"{i.id} ({len(i.members)})" for i in found) or "none"
        problem = f"no incident {incident}" if incident else "name one with --incident"
        err.print(f"error: {problem}; incidents: {listing}", markup=False)
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
) -> None:
    """Load OSV records (MAL-…, GHSA-… and others) for npm into the known-bad store."""
    from chainwatch.intel.store import KnownBadStore, Record, parse_osv, read_osv

    store = KnownBadStore(db)
    problems = 0
    seen = 0

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
                record = parse_osv(doc, "osv")
                if record is not None:
                    yield record
                if seen % 5000 == 0:
                    bar.update(task, description=f"reading OSV records: {seen}")

    imported = store.import_records(records())
    typer.echo(f"imported {plural(imported, 'npm advisory')} from {plural(seen, 'record')} "
               f"({problems} unreadable); the store holds {plural(store.count(), 'advisory')}")
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
    for v in stored:
        typer.echo(plain(f"{v.package}@{v.version}  {v.level.value:10} {v.score:3}  "
                         f"{v.origin:8} {v.scanned_at}  {v.key}"))
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
        err.print(plain(f"error: no stored verdict or known-bad record matches {target}"),
                  markup=False, soft_wrap=True)
        raise typer.Exit(2)
    if not quiet:
        err.print(plain(f"removed {plural(len(gone), 'stored verdict')} and "
                        f"{', '.join(advisories) or 'no known-bad record'} for {target}: "
                        f"{' '.join(reason.split())}"), markup=False, soft_wrap=True)


@rules_app.command("list", epilog=(
    "Examples:\n\n"
    "  chainwatch rules list\n\n"
    "  chainwatch rules list --rules ./my-rules"))
def rules_list(
    rules_dir: Annotated[list[Path] | None, typer.Option(
        "--rules", metavar="DIR", help="Extra folder of rule files (repeatable).")] = None,
) -> None:
    """List every finding chainwatch can report: the rule files' rules, then the findings
    made by code (archive, scan, metadata, diff, sandbox, outputs), each with its severity,
    technique and title or description."""
    from chainwatch.analysis.catalog import CODE_FINDINGS
    from chainwatch.analysis.rules import load_rules
    from chainwatch.output.escape import plain

    try:
        rules = load_rules(rules_dir or [])
    except ChainwatchError as exc:
        err.print(plain(f"error: {exc}"), markup=False, soft_wrap=True)
        raise typer.Exit(exc.exit_code) from exc
    for r in rules:
        typer.echo(plain(f"{r.id:32} {r.severity.value:9} {r.technique:24} {r.title}"))
    for f in CODE_FINDINGS:
        typer.echo(f"{f.id:32} {f.severity:9} {f.technique:24} {f.description}")


@rules_app.command("test", epilog=(
    "Examples:\n\n"
    "  chainwatch rules test                 # the built-in rules\n\n"
    "  chainwatch rules test ./my-rules      # a folder of rule files (or single files)"))
def rules_test(
    paths: Annotated[list[Path] | None, typer.Argument(
        metavar="PATH", help="Rule files or folders of them; none: the built-in rules.")] = None,
    quiet: QuietOpt = False,
) -> None:
    """Run each rule's own test cases: every positive case must fire the rule, every negative
    case must not. Exit 1 when a case fails, 2 when a rule file cannot be read."""
    from chainwatch.analysis.engine import Engine
    from chainwatch.analysis.rulecheck import run_cases
    from chainwatch.analysis.rules import builtin_rules, load_rule_paths, load_rules
    from chainwatch.output.escape import one_line as text_line
    from chainwatch.output.escape import plain

    try:
        load_rules(paths or [])  # ids must not clash with the built-in rules
        rules = load_rule_paths(paths) if paths else builtin_rules()
        results = run_cases(rules, Engine(rules))
    except ChainwatchError as exc:
        err.print(plain(f"error: {exc}"), markup=False, soft_wrap=True)
        raise typer.Exit(exc.exit_code) from exc
    failed = [c for c in results if not c.passed]
    for case in failed:
        shown = text_line(case.text)
        shown = shown if len(shown) <= 120 else shown[:119] + "…"
        what = "did not fire" if case.kind == "positive" else "fired"
        typer.echo(f"FAIL {plain(case.rule.id)} {case.kind} case {case.index} {what}: "
                   f"{shown}  ({plain(case.rule.origin)})")
    if not quiet or failed:
        summary = (f"{plural(len(rules), 'rule')}, {plural(len(results), 'case')}: "
                   + (f"{len(failed)} failed" if failed else "all passed"))
        err.print(plain(summary), markup=False, soft_wrap=True)
    if failed:
        raise typer.Exit(1)


def main() -> None:
    """Run the command line; whatever escapes a command is one line and an exit code, never a
    traceback (set CHAINWATCH_DEBUG=1 to see it)."""
    import os

    interrupt.install()
    try:
        returned = app(standalone_mode=False)
    except typer.TyperException as exc:  # usage errors: one line, not a framed panel
        ctx = getattr(exc, "ctx", None)
        if type(exc).__name__ == "NoArgsIsHelpError":
            if exc.format_message().strip():  # a bare command shows its help (rich: already)
                typer.echo(exc.format_message(), err=True)
            sys.exit(2)
        from chainwatch.output.escape import plain

        hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        text = " ".join(exc.format_message().split())
        err.print(plain(f"error: {text}{hint}"), markup=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        interrupt.finish()  # at once: worker threads are abandoned, never waited for
    except Exception as exc:
        if os.environ.get("CHAINWATCH_DEBUG") == "1":
            raise
        message, code = describe_failure(exc)
        err.print(f"error: {message}", markup=False)
        sys.exit(code)
    if returned == interrupt.EXIT_INTERRUPTED:  # typer turns KeyboardInterrupt into Exit(130)
        interrupt.finish()
    sys.exit(returned if isinstance(returned, int) else 0)
