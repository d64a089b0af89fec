"""Fixtures: a real RabbitMQ node the suite starts, and Conveyor systems running against it."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.localnode import LocalNode, free_node_ports, rabbitmq_installed
from devtools.postgres import INSTALL_HINT, PostgresServer, postgres_installed
from tests.state_backends import store, where  # noqa: F401 - the state contract tests' two backends

#: Fixtures that start real servers or processes: a test using one (even through another
#: fixture) is an integration test, and `pytest -m "not integration"` leaves it out.
INTEGRATION_FIXTURES = frozenset({"rabbitmq", "postgres", "cluster", "deployment"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if INTEGRATION_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def rabbitmq(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNode]:
    """A RabbitMQ node of the suite's own, on free ports, removed at the end."""
    if not rabbitmq_installed():
        pytest.fail("RabbitMQ is not installed: apt-get install rabbitmq-server (scripts/test.sh does it)")
    port, management_port = free_node_ports()
    node = LocalNode(tmp_path_factory.mktemp("rabbitmq"), port=port, management_port=management_port, name="test")
    node.start()
    yield node
    node.stop()
    if not os.environ.get("CONVEYOR_KEEP_NODE"):
        shutil.rmtree(node.base, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """A PostgreSQL server of the suite's own (one per xdist worker), on a free port, removed at the end."""
    if not postgres_installed():
        pytest.fail(INSTALL_HINT)
    with PostgresServer(tmp_path_factory.mktemp("postgres")) as server:
        yield server


@pytest.fixture(scope="module")
def system(rabbitmq: LocalNode, tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """Gateway and workers, running as real processes against the suite's RabbitMQ node."""
    from tests.system import System

    base: Path = tmp_path_factory.mktemp("system")
    running = System(
        base,
        rabbitmq.url,
        extra_config="""
[steps.AlwaysFails]
max_retries = 3
backoff = "exponential"
retry_delay = 300
max_retry_delay = 1000
dead_letter_queue = "test.dead"
[steps.LimitedProbe]
concurrency = 2
""",
    )
    running.start_workers(processes=1, threads=4)
    running.start_gateway()
    yield running
    running.stop_all()
