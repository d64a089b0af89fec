"""The cluster suite's servers, started once per session: 3 RabbitMQ nodes joined into a cluster,
1 PostgreSQL, and one deployment's processes against them. ``pytest -m cluster`` runs it alone."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator

import pytest

from devtools.cluster import LocalCluster
from devtools.localnode import rabbitmq_installed
from devtools.postgres import INSTALL_HINT, PostgresServer, postgres_installed
from tests.cluster.deployment import Deployment


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    if not rabbitmq_installed():
        pytest.fail("RabbitMQ is not installed: apt-get install rabbitmq-server (scripts/test.sh does it)")
    cluster = LocalCluster(tmp_path_factory.mktemp("cluster"), size=3)
    started = time.monotonic()
    try:
        cluster.start()
        print(f"\n[cluster] 3 RabbitMQ nodes joined in {time.monotonic() - started:.1f}s")
        yield cluster
    finally:
        cluster.stop()
        if not os.environ.get("CONVEYOR_KEEP_NODE"):
            shutil.rmtree(cluster.base, ignore_errors=True)


@pytest.fixture(scope="session")
def cluster_postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    if not postgres_installed():
        pytest.fail(INSTALL_HINT)
    with PostgresServer(tmp_path_factory.mktemp("cluster-postgres")) as server:
        yield server


@pytest.fixture(scope="session")
def deployment(
    cluster: LocalCluster, cluster_postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    running = Deployment(tmp_path_factory.mktemp("deployment"), cluster, cluster_postgres.url)
    started = time.monotonic()
    try:
        running.start()
        print(f"[cluster] 2 gateways, 2 workers, 2 schedulers up in {time.monotonic() - started:.1f}s")
        yield running
    finally:
        running.stop()
