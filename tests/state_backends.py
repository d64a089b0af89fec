"""The two state backends as fixtures: a fresh SQLite file, or the suite's PostgreSQL server, emptied."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from conveyor import StateStore, open_store

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)]


@pytest.fixture(params=BACKENDS)
def where(request, tmp_path) -> str:
    """Where a fresh, empty store lives: a SQLite path, or a PostgreSQL URL (tables emptied)."""
    if request.param == "sqlite":
        return str(tmp_path / "state.db")
    server = request.getfixturevalue("postgres")
    with psycopg.connect(server.url, autocommit=True) as db:
        exists = db.execute("SELECT to_regclass('state') IS NOT NULL").fetchone()[0]
        if exists:
            db.execute("TRUNCATE state, outbox, cron_fires")
    return server.url


@pytest.fixture
def store(where) -> Iterator[StateStore]:
    opened = open_store(where)
    yield opened
    opened.close()
