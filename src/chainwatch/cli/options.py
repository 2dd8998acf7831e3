"""Options shared by several commands (typer Annotated types)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from chainwatch.output.console import ColorMode

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


PathsArg = Annotated[list[Path], typer.Argument(metavar="PATH", help="Folders or files to inventory.")]
RecordOpt = Annotated[str | None, typer.Option(
    "--record", metavar="LABEL",
    help="Remember these environments under a label (repo@commit, image digest).")]


ExcludeOpt = Annotated[list[str] | None, typer.Option(
    "--exclude", metavar="GLOB", help="Glob of paths to skip (repeatable).")]


PolicyOpt = Annotated[Path | None, typer.Option("--policy", metavar="FILE", help="Policy TOML file.")]
MinAgeOpt = Annotated[str | None, typer.Option(
    "--min-age", metavar="DURATION", help="Minimum release age, e.g. 48h or 7d (overrides the policy).")]
ScanOpt = Annotated[bool, typer.Option(
    "--scan/--no-scan", metavar="", help="Apply the scan rule: scan releases within the policy's scan "
    "window once (verdicts are kept in the database by integrity).")]
