"""The serve read model (and the API over it) on a real PostgreSQL server.

The read model's SQLite tests run here unchanged against a fresh database of a throwaway
cluster (the ``postgres_url`` fixture of test_postgres.py), one database per test.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine, text

from chainwatch.db import connect
from tests.integration.test_postgres import postgres_url  # noqa: F401 - the cluster fixture
from tests.unit.test_serve_api import (  # noqa: F401 - run here on PostgreSQL
    test_read_routes_answer_with_data,
    test_two_users_at_once,
    test_verdicts_list_filter_page_and_document,
)
from tests.unit.test_serve_api_queries import (  # noqa: F401 - run here on PostgreSQL
    test_alerts_carry_their_deliveries_and_page,
    test_decisions_filter_and_page,
    test_environments_page_with_package_counts,
    test_exposure_has_first_and_last_seen_per_label,
    test_incidents_are_recomputed_when_a_verdict_arrives,
    test_incidents_brief_and_report,
    test_limit_is_bounded,
    test_overview_counts_and_charts,
    test_verdict_filters,
    test_verdicts_are_newest_first_and_paged_by_a_cursor_stable_under_inserts,
)

_numbers = itertools.count()


@pytest.fixture
def engine(postgres_url: str) -> Iterator[Engine]:  # noqa: F811 - the fixture above
    name = f"serve_{next(_numbers)}"
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    made = connect(postgres_url.rsplit("/", 1)[0] + f"/{name}")
    try:
        yield made
    finally:
        made.dispose()
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE {name}"))
        admin.dispose()


def test_these_tests_run_on_postgres(engine: Engine) -> None:
    assert engine.dialect.name == "postgresql"


def test_the_read_indexes_are_created_on_postgres(engine: Engine) -> None:
    from sqlalchemy import inspect

    from chainwatch.serve.queries import READ_INDEXES, ReadModel

    ReadModel(engine)
    ReadModel(engine)  # a second server starting on the same database
    have = {(t, i["name"]) for t in {t for _, t, _ in READ_INDEXES}
            for i in inspect(engine).get_indexes(t)}
    assert {(t, n) for n, t, _ in READ_INDEXES} <= have
