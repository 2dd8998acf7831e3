"""The console script's entry point: one line and an exit code, never a traceback."""

from __future__ import annotations

import os
import sys

import typer

from chainwatch import interrupt
from chainwatch.cli.app import app, err
from chainwatch.errors import describe_failure


def main() -> None:
    """Run the command line; whatever escapes a command is one line and an exit code, never a
    traceback (set CHAINWATCH_DEBUG=1 to see it)."""
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
