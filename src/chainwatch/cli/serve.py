"""``chainwatch serve``: the web pages and JSON API over the shared database."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path
from typing import Annotated

import typer

from chainwatch.cli.app import app, err
from chainwatch.cli.common import bind_listen, serve_until_signalled
from chainwatch.cli.options import DbOpt, VerboseOpt
from chainwatch.errors import ChainwatchError, one_line

#: connections and requests served at once; uvicorn answers 503 beyond
MAX_CONNECTIONS = 128
#: a token file larger than this is not a token
MAX_TOKEN_FILE = 4096
#: the fewest characters of a token when listening beyond loopback
MIN_TOKEN = 32
#: how to make a token strong enough
MAKE_TOKEN = "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"


def read_token_file(path: Path) -> str:
    """The token in ``path``: refused (UsageError-like ValueError) when the file is not a
    regular file, is larger than a token, is empty, or may be read or written by other users."""
    try:
        st = path.stat()
    except OSError as exc:
        raise ValueError(f"--token-file {path}: {exc.strerror or one_line(exc)}") from exc
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(f"--token-file {path}: not a regular file")
    if st.st_mode & (stat.S_IROTH | stat.S_IWOTH | stat.S_IWGRP):
        raise ValueError(f"--token-file {path}: other users may read or change it "
                         f"(mode {stat.S_IMODE(st.st_mode):04o}); run: chmod 600 {path}")
    if st.st_size > MAX_TOKEN_FILE:
        raise ValueError(f"--token-file {path}: larger than {MAX_TOKEN_FILE} bytes; not a token")
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeError) as exc:
        raise ValueError(f"--token-file {path}: cannot read: {one_line(exc)}") from exc
    if not token:
        raise ValueError(f"--token-file {path}: the file is empty")
    return token


@app.command(epilog=(
    "Examples:\n\n"
    "  chainwatch serve\n\n"
    "  CHAINWATCH_TOKEN=$(cat token) chainwatch serve --listen 0.0.0.0:8080 --db "
    "postgresql+psycopg://chainwatch@db/chainwatch"))
def serve(
    listen: Annotated[str, typer.Option("--listen", metavar="HOST:PORT",
                                        help="HOST:PORT to serve on.")] = "127.0.0.1:8080",
    db: DbOpt = None,
    token_file: Annotated[Path | None, typer.Option(
        "--token-file", metavar="FILE",
        help="File holding the token the API and the login form ask for (or env "
             "CHAINWATCH_TOKEN); required when listening beyond loopback.")] = None,
    workers: Annotated[int, typer.Option(
        "--scan-workers", metavar="N", min=1, max=16,
        help="Scans submitted over the API that run at once.")] = 2,
    verbose: VerboseOpt = False,
) -> None:
    """Serve the team's web pages and JSON API over the shared database.

    Verdicts, alerts, incidents, exposure, and what the gate blocked."""
    import logging

    from chainwatch.gate.proxy import loopback_host

    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        err.print(f"error: --listen wants HOST:PORT with a port from 1 to 65535, not {listen!r}",
                  markup=False)
        raise typer.Exit(2)
    token = os.environ.get("CHAINWATCH_TOKEN", "").strip() or None
    if token_file is not None:
        try:
            token = read_token_file(token_file)
        except ValueError as exc:
            err.print(f"error: {exc}", markup=False)
            raise typer.Exit(2) from exc
        if token_file.stat().st_mode & stat.S_IRGRP:
            err.print(f"warning: --token-file {token_file}: its group may read it; "
                      f"chmod 600 {token_file} keeps it yours alone", markup=False)
    local = loopback_host(host)
    if not local and token is None:
        err.print(f"error: listening on {host} needs a token (--token-file FILE or "
                  "CHAINWATCH_TOKEN): the pages and API show what the team's environments hold",
                  markup=False)
        raise typer.Exit(2)
    if token is not None and len(token) < MIN_TOKEN:
        if not local:
            err.print(f"error: listening on {host} needs a token of at least {MIN_TOKEN} "
                      f"characters (this one has {len(token)}); make one with: {MAKE_TOKEN}",
                      markup=False)
            raise typer.Exit(2)
        err.print(f"warning: the token has {len(token)} characters, fewer than {MIN_TOKEN}; "
                  f"make a stronger one with: {MAKE_TOKEN}", markup=False)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s",
                        stream=sys.stderr)
    from chainwatch.output.console import quiet_libraries

    logging.getLogger("chainwatch").setLevel(logging.NOTSET)
    quiet_libraries(verbose)

    import uvicorn

    from chainwatch.cli.common import _known_bad
    from chainwatch.db import connect
    from chainwatch.serve.app import LOOPBACK_HOSTS, create_app
    from chainwatch.serve.conn import guarded_protocol
    from chainwatch.serve.scans import ScanPool, registry_scan

    try:
        engine = connect(db)
    except ChainwatchError as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(exc.exit_code) from exc
    except Exception as exc:  # an unreachable server, a bad URL: one line
        err.print(f"error: --db: cannot open the database: {one_line(exc)}", markup=False)
        raise typer.Exit(2) from exc
    known_bad = _known_bad(db)

    def pool() -> ScanPool:
        from chainwatch.registry import NpmConfig, RegistryClient

        scan, _close = registry_scan(engine, RegistryClient(NpmConfig.load()), known_bad)
        return ScanPool(scan, workers=workers)

    # without a token the server answers to loopback names only (no DNS rebinding)
    hosts = None if token else [*LOOPBACK_HOSTS, host.strip("[]"), host]
    application = create_app(engine, token=token, scans=pool, known_bad=known_bad,
                             allowed_hosts=hosts)
    sock = bind_listen(host, int(port), listen)
    shown = f"[{host.strip('[]')}]" if ":" in host.strip("[]") else host
    err.print(f"chainwatch serve on http://{shown}:{port}/"
              + ("" if token else " (no token: open to this machine only)"), markup=False)
    config = uvicorn.Config(application, log_level="info" if verbose else "warning",
                            proxy_headers=False, server_header=False,
                            limit_concurrency=MAX_CONNECTIONS, timeout_keep_alive=5,
                            http=guarded_protocol())

    serve_until_signalled(config, sock)
