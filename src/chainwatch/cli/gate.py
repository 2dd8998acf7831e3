"""The gate: ``chainwatch policy show``, ``check`` and ``proxy``."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from chainwatch.cli.app import app, err, policy_app
from chainwatch.cli.common import (
    _collect,
    _exit_for_unreadable,
    _known_bad,
    _nothing_stored,
    _open_db,
    _policy,
    bind_listen,
    serve_until_signalled,
)
from chainwatch.cli.options import (
    CacheOpt,
    ColorOpt,
    DbOpt,
    ExcludeOpt,
    MinAgeOpt,
    OfflineOpt,
    PathsArg,
    PolicyOpt,
    QuietOpt,
    RegistryOpt,
    ScanOpt,
    VerboseOpt,
)
from chainwatch.errors import ChainwatchError
from chainwatch.output.console import ColorMode, output_width, use_color

if TYPE_CHECKING:
    from chainwatch.gate.check import Placed
    from chainwatch.gate.decisions import DecisionLog
    from chainwatch.gate.policy import Policy
    from chainwatch.gate.scanning import ScanGate
    from chainwatch.registry import RegistryClient


#: ``gc.set_threshold`` for a ``check`` run: with the defaults, collections scanning every slim
#: packument held so far took ~30% of a cold run's CPU (bench/check_speed.py)
CHECK_GC_THRESHOLDS = (50_000, 20, 100)


@contextmanager
def _fewer_collections() -> Iterator[None]:
    """The garbage collector tuned for judging a lockfile: what was loaded before is frozen
    (never traversed again) and parsing packuments (millions of short-lived objects, no
    cycles) triggers far fewer collections; both undone after."""
    import gc

    before = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(*CHECK_GC_THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()


class CheckFormat(StrEnum):
    table = "table"
    json = "json"
    sarif = "sarif"
    github = "github"


def _scan_gate(policy: Policy, client: RegistryClient, db: str | None,
               workers: int = 2, defer: bool = False) -> ScanGate:
    """The scan rule's gate. With ``defer`` (``check``) its scanner is built on the first scan,
    and with no database yet (nothing ever stored) its verdict memory is opened on the first
    verdict kept: a run that scans nothing loads no analysis or database code."""
    from chainwatch.gate.deferred import DeferredScanner, DeferredStore
    from chainwatch.gate.scanning import ScanGate, Scans, VerdictMemory

    def scanner() -> Scans:
        from chainwatch.intel.views import CombinedKnownBad
        from chainwatch.scan import Scanner

        # the known-bad rule is separate; the scan rule judges the code and metadata alone
        return Scanner(client, known_bad=CombinedKnownBad(), workers=1,
                       sandbox=policy.scan_sandbox)

    def open_store() -> VerdictMemory | None:
        from chainwatch.verdicts import VerdictStore

        return _open_db(VerdictStore, db, "verdict memory", "verdicts are kept in memory")

    if not defer:
        return ScanGate(scanner(), open_store(), policy.scan_window, workers=workers)
    store: VerdictMemory | None = (DeferredStore(open_store) if _nothing_stored(db)
                                   else open_store())
    return ScanGate(DeferredScanner(scanner, client, policy.scan_sandbox), store,
                    policy.scan_window, workers=workers)


def _decision_log(gate: ScanGate | None, db: str | None) -> DecisionLog | None:
    """The log of gate decisions, on the database the verdict memory uses (else on the
    database given or already there); None when no database is in use or it cannot open.
    A run that kept nothing where no database exists imports no database code."""
    from chainwatch.gate.deferred import DeferredStore

    def warn(message: str) -> None:
        err.print(f"warning: {message}", markup=False, soft_wrap=True)

    store = gate.store if gate is not None else None
    if isinstance(store, DeferredStore):  # opened only if this run kept a verdict
        store = store.current
    engine = getattr(store, "engine", None)
    if engine is None and _nothing_stored(db):
        return None
    from chainwatch.gate.decisions import DecisionLog, open_log

    if engine is not None:
        return DecisionLog(engine, warn=warn)
    found = _open_db(open_log, db, "decision log", "decisions are not kept")
    if found is not None:
        found.warn = warn
    return found


def _record_checked(log: DecisionLog, placed: list[Placed]) -> None:
    """Every decision ``check`` reports, once per lockfile (the paths to it are not kept)."""
    from chainwatch.gate.decisions import Recorded

    seen: set[tuple[str, str, str, str, str]] = set()
    entries: list[Recorded] = []
    for p in placed:
        d = p.decision
        key = (d.name, d.version, d.action, d.rule, p.source)
        if key not in seen:
            seen.add(key)
            entries.append(Recorded("check", d.name, d.version, d.action, d.rule, d.reason,
                                    p.source))
    log.record(entries)


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
        "judged because the registry was unreachable or the time ran out, even when the policy "
        "says offline = \"warn\" (blocking is the default).")] = False,
    timeout: Annotated[float, typer.Option(
        "--timeout", metavar="SECONDS", min=1.0,
        help="Stop judging after this long; versions not judged by then are reported "
        "(blocked unless the policy says offline = \"warn\").")] = 120.0,
    jobs: Annotated[int, typer.Option(
        "--jobs", "-j", metavar="N", min=1, max=64,
        help="Packages looked up (and releases scanned) at once.")] = 8,
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
                            packument_ttl=policy.packument_ttl.total_seconds(),
                            max_connections=max(32, jobs))
    with client:
        # as many scans at once as versions checked at once: none waits in the queue
        gate = _scan_gate(policy, client, db, workers=jobs, defer=True) if scan else None
        checker = Checker(policy, client, _known_bad(db), scans=gate)
        try:
            label = "checking versions against the policy (scanning recent releases)"
            with err.status(f"{label} …") as status:
                def progress(done: int, total: int) -> None:
                    if not quiet:
                        status.update(f"{label}: {done}/{total} …")
                with _fewer_collections():
                    placed = checker.check(envs, jobs=jobs, timeout=timeout,
                                           progress=progress)
            if (kept := _decision_log(gate, db)) is not None:  # never changes the answer
                _record_checked(kept, placed)
        finally:
            if gate is not None:
                gate.close()
    checked = len({(p.name, p.version) for e in envs for p in e.packages if p.exact}
                  | {(p.decision.name, p.decision.version) for p in placed})
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
    import logging

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
    try:
        npm_config = NpmConfig.load(upstream)
    except ChainwatchError as exc:
        err.print(f"error: --upstream: {exc}; not an http(s) upstream URL", markup=False)
        raise typer.Exit(2) from exc
    client = RegistryClient(npm_config, cache_dir)
    gate = _scan_gate(policy, client, db) if scan else None
    try:
        server = Proxy(upstream, Checker(policy, None, _known_bad(db), scans=gate),
                       fresh_seconds=fresh, tarball_hosts=tuple(tarball_hosts or ()),
                       public_url=public_url, token=token, open_decisions=local,
                       budget=MemoryBudget(int(memory) * 1024 * 1024),
                       decision_log=_decision_log(gate, db))
    except ValueError as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(2) from exc
    sock = bind_listen(host, int(port), listen)
    err.print(f"chainwatch proxy on http://{listen}/ filtering {upstream} — point clients at it "
              f"with: npm config set registry http://{listen}/", markup=False)
    # a signal: uvicorn stops taking requests and lets those in flight end, for GRACE seconds
    config = uvicorn.Config(server.app, log_level="info" if verbose else "warning")

    serve_until_signalled(config, sock)
