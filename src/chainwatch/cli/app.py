"""The root ``chainwatch`` application: its sub-groups, stderr console and --version."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer

from chainwatch import __version__
from chainwatch.output.helptypes import quiet_type_column

if TYPE_CHECKING:
    from rich.console import Console

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


class _Stderr:
    """rich's stderr console, made on first use: ``--version`` and a command that prints
    nothing on stderr never import rich. Everything asked of it is the console's own."""

    _console: Console | None = None
    _lock = threading.Lock()  # scan's worker threads print notes: one console for all

    def _real(self) -> Console:
        with self._lock:
            if self._console is None:
                from rich.console import Console

                self._console = Console(stderr=True, highlight=False, soft_wrap=True)
            return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real(), name)

    # rich's live displays (progress bars, spinners) hold the console in a with-block, which
    # asks the type, not the instance: these two are passed on by hand
    def __enter__(self) -> Console:
        return self._real().__enter__()

    def __exit__(self, *exc: object) -> None:
        self._real().__exit__(*exc)


err = cast("Console", _Stderr())


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
