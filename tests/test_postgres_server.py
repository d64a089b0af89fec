"""The throwaway PostgreSQL server of devtools/postgres.py: it starts fast, keeps committed rows
through a crash, and several run side by side."""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
import pytest

from devtools.postgres import PostgresServer

pytestmark = pytest.mark.integration


def rows(url: str) -> list[int]:
    with psycopg.connect(url) as connection:
        return [row[0] for row in connection.execute("SELECT n FROM t ORDER BY n")]


def insert(url: str, *values: int) -> None:
    with psycopg.connect(url) as connection:
        connection.execute("CREATE TABLE IF NOT EXISTS t (n integer)")
        for value in values:
            connection.execute("INSERT INTO t VALUES (%s)", (value,))


def test_the_suite_server_takes_writes(postgres: PostgresServer) -> None:
    with psycopg.connect(postgres.url) as connection:
        connection.execute("CREATE TEMPORARY TABLE probe (n integer)")
        connection.execute("INSERT INTO probe VALUES (1)")
        assert connection.execute("SELECT current_user, current_database(), n FROM probe").fetchone() == (
            "conveyor",
            "conveyor",
            1,
        )


def test_a_new_server_takes_a_write_within_seconds(tmp_path: Path) -> None:
    began = time.monotonic()
    with PostgresServer(tmp_path) as server:
        insert(server.url, 1)
        elapsed = time.monotonic() - began
        assert rows(server.url) == [1]
    assert elapsed < 5, f"start, connect and write took {elapsed:.1f}s"


def test_an_immediate_restart_keeps_committed_rows(tmp_path: Path) -> None:
    with PostgresServer(tmp_path) as server:
        insert(server.url, 1, 2, 3)
        before = server.pid
        server.restart()  # -m immediate: no shutdown checkpoint, the rows come back by WAL replay
        assert server.pid not in (None, before)
        assert rows(server.url) == [1, 2, 3]


def test_a_killed_server_starts_again_with_its_rows(tmp_path: Path) -> None:
    with PostgresServer(tmp_path) as server:
        insert(server.url, 1, 2)
        server.kill()
        assert server.pid is None
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(server.url, connect_timeout=2)
        server.start()
        assert rows(server.url) == [1, 2]


def test_two_servers_run_side_by_side(tmp_path: Path) -> None:
    with PostgresServer(tmp_path / "a") as first, PostgresServer(tmp_path / "b") as second:
        assert first.port != second.port
        insert(first.url, 1)
        insert(second.url, 2)
        assert rows(first.url) == [1]
        assert rows(second.url) == [2]
