"""``--dask``: the glue between ``scan`` / ``watch`` and ``chainwatch.scale``."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from chainwatch.cli.app import err
from chainwatch.cli.common import _nothing_stored
from chainwatch.errors import ChainwatchError
from chainwatch.output.escape import plain

if TYPE_CHECKING:
    import contextlib

    from chainwatch.output.jsonout import Outcome
    from chainwatch.registry import NpmConfig
    from chainwatch.scale.cluster import DaskScanExecutor
    from chainwatch.scale.task import ScanOptions


def known_bad_url(db: str | None) -> str | None:
    """The known-bad store a local run would read, as a URL the workers open themselves
    (``None``: nothing was ever stored, the built-in list is the whole answer)."""
    from chainwatch.db import default_url

    if _nothing_stored(db):
        return None
    return _absolute_sqlite(db or default_url())


def _absolute_sqlite(url: str) -> str:
    """A SQLite file named relative to our working folder, named absolutely: a worker's working
    folder is not ours (it still needs the file at that path, or fails closed)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        return url
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:" \
            or database.startswith("file:") or Path(database).is_absolute():
        return url
    return parsed.set(database=str(Path(database).resolve())).render_as_string(
        hide_password=False)


def scan_options(config: NpmConfig, cache_dir: Path | None, offline: bool, db: str | None,
                 rules_dir: Sequence[Path] | None, sandbox: bool) -> ScanOptions:
    from chainwatch.scale.task import ScanOptions

    return ScanOptions(config=config, cache_dir=str(cache_dir.resolve()) if cache_dir else None,
                       offline=offline, db=known_bad_url(db),
                       rule_dirs=tuple(str(d.resolve()) for d in rules_dir or ()),
                       sandbox=sandbox)


def fail(exc: ChainwatchError) -> typer.Exit:
    err.print(plain(f"error: {exc}"), markup=False)
    return typer.Exit(exc.exit_code)


def scan_on_dask(address: str, targets: Sequence[str], against: str | None,
                 packument: dict[str, Any] | None, config: NpmConfig, cache_dir: Path | None,
                 offline: bool, db: str | None, rules_dir: Sequence[Path] | None,
                 sandbox: bool, notice: Callable[[str], None] | None
                 ) -> Iterator[tuple[int, Outcome]]:
    """Every target's outcome, as the cluster finishes them; a cluster that cannot be
    reached is one line and exit 2."""
    from chainwatch.scale.cluster import connect, scan_all

    options = scan_options(config, cache_dir, offline, db, rules_dir, sandbox)
    try:
        with connect(address) as client:
            for i, result in scan_all(client, targets, against, options, packument):
                if notice is not None:
                    for line in result.notices:
                        notice(line)
                yield i, result.outcome
    except ChainwatchError as exc:
        raise fail(exc) from exc


def dask_executor(stack: contextlib.ExitStack, address: str, config: NpmConfig,
                  cache_dir: Path | None, db: str | None, sandbox: bool) -> DaskScanExecutor:
    """``watch --dask``: the scan stage on the cluster, connected until ``stack`` closes; a
    cluster that cannot be reached is one line and exit 2."""
    from chainwatch.scale.cluster import DaskScanExecutor, connect

    try:
        client = stack.enter_context(connect(address))
    except ChainwatchError as exc:
        raise fail(exc) from exc
    return DaskScanExecutor(client, scan_options(config, cache_dir, False, db, None, sandbox))
