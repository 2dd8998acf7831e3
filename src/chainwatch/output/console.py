"""How output reaches a person or a pipe: colour, width, progress, log levels.

- Colour: ``--color always|never`` wins; with ``auto`` (the default) a non-empty ``NO_COLOR``
  turns it off (https://no-color.org), otherwise colour follows whether the stream is a terminal.
- Width: a terminal's width on a terminal; no wrapping at all when the output is a pipe or a
  file, so names and errors are never cut mid-word for the program reading them.
- Logging: ``-v`` shows chainwatch's own steps (its loggers at DEBUG, everything else at
  WARNING); ``-vv`` adds the HTTP libraries' debug lines.
"""

from __future__ import annotations

import logging
import os
import sys
from enum import StrEnum
from io import StringIO
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:  # rich is imported where a console is made: --version never needs it
    from rich.console import Console

#: The width given to rich when the output is not a terminal: wide enough never to wrap.
NO_WRAP = 1_000_000
#: Loggers of libraries that are chatty at DEBUG: quiet unless asked with -vv.
_NOISY = ("httpx", "httpx_retries", "httpcore", "hpack", "h2", "urllib3", "asyncio", "markdown_it",
          "sqlalchemy")


class ColorMode(StrEnum):
    auto = "auto"
    always = "always"
    never = "never"


def is_terminal(stream: IO[str] | None) -> bool:
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def use_color(mode: ColorMode | str = ColorMode.auto, stream: IO[str] | None = None) -> bool:
    """Whether to colour output written to ``stream`` (stdout by default)."""
    mode = ColorMode(mode)
    if mode is ColorMode.always:
        return True
    if mode is ColorMode.never or os.environ.get("NO_COLOR"):
        return False
    return is_terminal(sys.stdout if stream is None else stream)


def output_width(stream: IO[str] | None = None) -> int:
    """The terminal's width (``COLUMNS`` honoured) on a terminal; :data:`NO_WRAP` otherwise."""
    stream = sys.stdout if stream is None else stream
    if not is_terminal(stream):
        return NO_WRAP
    from rich.console import Console

    return Console(file=stream).width


def render_console(file: IO[str], color: bool = False, width: int | None = None) -> Console:
    """A rich console that renders into ``file`` (a buffer): colour only when asked, and no
    wrapping unless a width is given."""
    from rich.console import Console

    return Console(file=file, width=width or NO_WRAP, force_terminal=color, no_color=not color,
                   color_system="standard" if color else None, highlight=False, emoji=False,
                   soft_wrap=not width, legacy_windows=False)


def rendered(buf: StringIO) -> str:
    """What a render console wrote, without the spaces rich pads table cells with at the end
    of each line (noise in a pipe, a diff or a log)."""
    return "".join(line.rstrip(" ") + "\n" for line in buf.getvalue().splitlines())


def setup_logging(verbosity: int) -> None:
    """0: warnings and errors; 1 (``-v``): chainwatch's own steps (its loggers at DEBUG), every
    library at WARNING; 2 or more (``-vv``): everything at DEBUG, HTTP libraries included."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.DEBUG if verbosity >= 2 else logging.WARNING,
                        handlers=[handler], force=True)
    logging.getLogger("chainwatch").setLevel(logging.DEBUG if verbosity else logging.WARNING)
    quiet_libraries(verbosity)


class RedactingFormatter(logging.Formatter):
    """Log lines with credentials in URLs and specs replaced by ``***`` (HTTP libraries log
    request URLs at DEBUG, and a registry URL may carry ``user:token@`` or ``?token=``)."""

    def format(self, record: logging.LogRecord) -> str:
        from chainwatch.specs import redact_credentials

        return redact_credentials(super().format(record))


def quiet_libraries(verbosity: int) -> None:
    """The chatty libraries (HTTP, database) at WARNING unless ``-vv``, whatever the root
    logger's level (services log at INFO)."""
    for name in _NOISY:
        logging.getLogger(name).setLevel(logging.NOTSET if verbosity >= 2 else logging.WARNING)
