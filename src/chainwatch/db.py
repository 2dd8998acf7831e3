"""The database: SQLAlchemy 2 Core, a SQLite file by default (WAL), any URL for teams."""

from __future__ import annotations

import os
from typing import Any

from sqlalchemy import Engine, MetaData, create_engine, event

from chainwatch.paths import data_dir

metadata = MetaData()


def default_url() -> str:
    env = os.environ.get("CHAINWATCH_DB")
    if env:
        return env
    folder = data_dir()
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'chainwatch.db'}"


def connect(url: str | None = None) -> Engine:
    """An engine with every table created (the tables register themselves on ``metadata``)."""
    import chainwatch.fleet
    import chainwatch.incidents.store
    import chainwatch.intel.store
    import chainwatch.verdicts
    import chainwatch.watch.state  # noqa: F401 - each defines tables on the shared metadata

    engine = create_engine(url or default_url())
    if engine.dialect.name == "sqlite":
        @event.listens_for(engine, "connect")
        def _pragmas(conn: Any, _: Any) -> None:
            cursor = conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()
    metadata.create_all(engine)
    return engine
