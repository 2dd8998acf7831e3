"""Helpers several commands share: databases, unreadable files, policies, lockfile walks,
listening servers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, TypeVar

import typer

from chainwatch.cli.app import err
from chainwatch.errors import ChainwatchError, one_line
from chainwatch.output.words import plural

if TYPE_CHECKING:
    import socket
    from types import FrameType

    import uvicorn

    from chainwatch.gate.policy import Policy
    from chainwatch.intel.base import KnownBadSource
    from chainwatch.model import Environment

T = TypeVar("T")


def _known_bad(db: str | None) -> KnownBadSource:
    """The database (when it can be opened) and the built-in list, asked together."""
    from chainwatch.intel import BuiltinKnownBad

    if _nothing_stored(db):
        return BuiltinKnownBad()
    from chainwatch.intel.store import CombinedKnownBad, KnownBadStore

    store = _open_db(KnownBadStore, db, "known-bad database", "using the built-in list")
    return CombinedKnownBad(store, BuiltinKnownBad()) if store else BuiltinKnownBad()


def _nothing_stored(db: str | None) -> bool:
    """No --db, no CHAINWATCH_DB and no default database file yet: nothing was ever stored,
    so the built-in list is the whole answer, without opening (and creating) a database."""
    import os

    from chainwatch.paths import data_dir

    return (not db and not os.environ.get("CHAINWATCH_DB")
            and not os.path.lexists(data_dir() / "chainwatch.db"))


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


def _record(label: str | None, envs: list[Environment], db: str | None) -> None:
    if not label:
        return
    from chainwatch.fleet import Fleet

    count = Fleet(db).record(label, envs)
    err.print(f"recorded {plural(len(envs), 'environment')} ({plural(count, 'package')}) as "
              f"{label}", markup=False)


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


def bind_listen(host: str, port: int, listen: str) -> socket.socket:
    """The listening socket for ``--listen``, bound before the server starts, so that a busy
    port or an unknown host is one line and exit 2."""
    from chainwatch.gate.listen import listen_socket

    try:
        return listen_socket(host, port)
    except OSError as exc:
        err.print(f"error: --listen {listen}: cannot listen there: "
                  f"{exc.strerror or one_line(exc)}", markup=False)
        raise typer.Exit(2) from exc


def serve_until_signalled(config: uvicorn.Config, sock: socket.socket) -> None:
    """Run uvicorn on ``sock``. A signal stops it taking requests and lets those in flight end
    for the grace period (a request still running cannot hold the shutdown), then exits 130."""
    import uvicorn

    from chainwatch import interrupt

    class Server(uvicorn.Server):
        signalled = False

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            self.signalled = True
            interrupt.arm()
            super().handle_exit(sig, frame)

    served = Server(config)
    served.run(sockets=[sock])
    if served.signalled:
        interrupt.finish()
