"""The database: SQLAlchemy 2 Core, a SQLite file by default (WAL), any URL for teams."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, MetaData, create_engine, event
from sqlalchemy.engine import make_url

from chainwatch.errors import UsageError
from chainwatch.paths import data_dir
from chainwatch.private import private_dir, private_file

metadata = MetaData()


def default_url() -> str:
    env = os.environ.get("CHAINWATCH_DB")
    if env:
        return env
    folder = data_dir()
    private_dir(folder)
    return f"sqlite:///{folder / 'chainwatch.db'}"


def _private_sqlite(url: str) -> None:
    """A new SQLite database file is created 0600 in a 0700 folder before SQLite opens it
    (SQLite gives its -wal and -shm files the database file's mode)."""
    parsed = make_url(url)
    database = parsed.database
    if (parsed.get_backend_name() != "sqlite" or not database or database == ":memory:"
            or database.startswith("file:") or parsed.query.get("uri")):
        return
    if not Path(database).parent.is_dir():
        raise UsageError(f"no folder {Path(database).parent} for the database file {database}")
    private_file(Path(database))


def connect(url: str | None = None) -> Engine:
    """An engine with every table created (the tables register themselves on ``metadata``)."""
    import chainwatch.fleet
    import chainwatch.gate.decisions
    import chainwatch.incidents.store
    import chainwatch.intel.store
    import chainwatch.verdicts
    import chainwatch.watch.state  # noqa: F401 - each defines tables on the shared metadata

    url = url or default_url()
    _private_sqlite(url)
    engine = create_engine(url)
    if engine.dialect.name == "sqlite":
        @event.listens_for(engine, "connect")
        def _pragmas(conn: Any, _: Any) -> None:
            cursor = conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()
    metadata.create_all(engine)
    _add_missing_indexes(engine)
    return engine


def _add_missing_indexes(engine: Engine) -> None:
    """Indexes added to a table after a database was made (``create_all`` makes only missing
    tables): one read of the index names, a ``CREATE INDEX`` only for those missing (so a
    connection never waits for another process's write lock once they all exist)."""
    if engine.dialect.name == "sqlite":
        query = "SELECT name FROM sqlite_master WHERE type = 'index'"
    elif engine.dialect.name == "postgresql":
        query = "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()"
    else:
        return
    with engine.connect() as conn:
        have = {row[0] for row in conn.exec_driver_sql(query)}
    for table in metadata.sorted_tables:
        for index in table.indexes:
            if index.name and index.name not in have:
                try:
                    index.create(engine, checkfirst=True)
                except Exception as exc:  # a read-only role, a race: slower, never broken
                    import logging

                    logging.getLogger(__name__).debug("index %s not made: %s", index.name, exc)
