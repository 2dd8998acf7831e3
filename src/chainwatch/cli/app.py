"""The root ``chainwatch`` application: its sub-groups, stderr console and --version."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from chainwatch import __version__
from chainwatch.output.helptypes import quiet_type_column

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
