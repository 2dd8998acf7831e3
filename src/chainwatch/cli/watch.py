"""``chainwatch watch``."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from chainwatch import interrupt
from chainwatch.cli.app import app, err
from chainwatch.cli.common import (
    _conflict,
    _http_urls,
    _known_bad,
    _policy,
    _unreadable,
)
from chainwatch.cli.options import (
    CacheOpt,
    DbOpt,
    PolicyOpt,
    RegistryOpt,
    VerboseOpt,
)
from chainwatch.errors import ChainwatchError, one_line


class AlertOn(StrEnum):
    suspicious = "suspicious"
    malicious = "malicious"


class Role(StrEnum):
    poller = "poller"
    scanner = "scanner"
    deliverer = "deliverer"


class LogFormat(StrEnum):
    text = "text"
    json = "json"


def _setup_service_logging(fmt: LogFormat, verbose: int) -> None:
    import json as jsonlib
    import logging

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


def _bounded(option: str, seconds: float, low: float, high: float) -> float:
    from chainwatch.errors import UsageError

    if not low <= seconds <= high:
        raise UsageError(f"{option} must be between {low:g} s and {high:g} s")
    return seconds


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
    role: Annotated[list[Role] | None, typer.Option(
        "--role", metavar="ROLE", help="Run only this part: poller, scanner or deliverer "
        "(repeatable; default all three). Several processes may share one --db: each claims "
        "what it works on under a lease.")] = None,
    lease: Annotated[str, typer.Option(
        "--lease", metavar="DURATION", help="How long a claim (poll, scan, delivery) holds its "
        "item if its process dies (1s to 1h; renewed while a scan runs).")] = "60s",
    scan_backoff: Annotated[str, typer.Option(
        "--scan-backoff", metavar="DURATION", help="Wait before retrying a release whose scan "
        "failed or died (doubling up to an hour).")] = "60s",
    registry: RegistryOpt = None,
    cache_dir: CacheOpt = None,
    db: DbOpt = None,
    policy_file: PolicyOpt = None,
    log_format: Annotated[LogFormat, typer.Option(
        "--log-format", help="Log lines as text or JSON objects.")] = LogFormat.text,
    verbose: VerboseOpt = False,
    dask: Annotated[str | None, typer.Option(
        "--dask", metavar="ADDRESS", help="Run the scan stage on this Dask scheduler "
        "(tcp://host:8786, or 'local'); polling, alerts and delivery stay here.")] = None,
) -> None:
    """Follow the registry: scan each new release of the watched packages and raise alerts."""
    import contextlib
    import json as jsonlib
    import logging
    import signal
    import threading

    from chainwatch.db import connect
    from chainwatch.fleet import Fleet
    from chainwatch.gate.policy import parse_duration
    from chainwatch.model import Level
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
    from chainwatch.watch.watcher import ROLES, WatchConfig, Watcher
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
    roles = tuple(dict.fromkeys(r.value for r in role)) if role else ROLES
    try:
        if "poller" not in roles:  # scanners and deliverers work from the database alone
            names = []
        elif packages_file is None and not from_paths and not top and (kept := state.watched()):
            # the database remembers the watchlist of earlier runs: go on watching it
            names = kept
            err.print(f"watching the {len(kept)} packages this database already holds",
                      markup=False)
        else:
            names = build_watchlist(packages_file, from_paths or [], top)
        config = WatchConfig(interval=parse_duration(interval).total_seconds(),
                             hot_interval=parse_duration(hot_interval).total_seconds(),
                             budget=budget, alert_on=Level(alert_on.value),
                             max_scan_attempts=max_scan_attempts,
                             lease=_bounded("--lease", parse_duration(lease).total_seconds(),
                                            1.0, 3600.0),
                             scan_backoff=_bounded("--scan-backoff", parse_duration(
                                 scan_backoff).total_seconds(), 0.0, 3600.0))
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
    cluster = contextlib.ExitStack()
    executor = None
    if dask is not None:  # the scan stage on the cluster, everything else here
        from chainwatch.cli.scale import dask_executor

        executor = dask_executor(cluster, dask, client.config, cache_dir, db, sandbox)
    watcher = Watcher(state, client, Scanner(client, known_bad=_known_bad(db), sandbox=sandbox),
                      VerdictStore(engine=engine), sinks, config, fleet=Fleet(db),
                      scan_executor=executor)
    if "poller" in roles:
        added = watcher.watch(names, hot=set(top_packages(100)))
        logging.getLogger("chainwatch.watch").info(
            "watching %d packages (%d new), every %.0f s (hot: %.0f s), %d requests/min, "
            "alerts to %s", len(names), added, watcher.interval, config.hot_interval, budget,
            ", ".join(s.name for s in sinks))
    if roles != ROLES:
        logging.getLogger("chainwatch.watch").info(
            "roles: %s (claims as %s, lease %.0f s)", ", ".join(roles), watcher.worker,
            config.lease)
    if metrics_port:
        try:
            watcher.metrics.serve(metrics_port)
        except OSError as exc:
            err.print(f"error: --metrics-port {metrics_port}: cannot serve there: "
                      f"{exc.strerror or one_line(exc)}", markup=False)
            raise typer.Exit(2) from exc
    if once:
        with cluster:
            typer.echo(jsonlib.dumps(watcher.run_once(roles)))
        return
    stop = threading.Event()

    def stopping(*_: object) -> None:  # finish the pass in hand, for GRACE seconds at most
        stop.set()
        interrupt.arm()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stopping)
    extra = []
    if changes and "poller" in roles:
        follower = ChangesFeed(changes, state, set(names))
        extra.append((follower.follow_once, "changes"))
    with cluster:
        watcher.run(stop, extra=extra, roles=roles)
    if stop.is_set():
        interrupt.finish()
