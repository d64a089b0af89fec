"""``[gateway] workers = N``: N gateway processes on one port, each with a SO_REUSEPORT socket of its own.

Real processes (``python -m gateway``) against the suite's RabbitMQ node; ``GET /health`` names
the process that answered in its ``X-Gateway-Pid`` header.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devtools.localnode import LocalNode
from devtools.processes import command_line, descendants, living, wait_for
from tests.system import System, free_port

PID_HEADER = "x-gateway-pid"


class Gateways(System):
    """A system on the test probes whose only process is ``python -m gateway`` with N workers."""

    def __init__(self, base: Path, broker_url: str, workers: int) -> None:
        super().__init__(base, broker_url, flows=["tests.flows"], gateway_workers=workers)
        self.parent = self.start_gateway()

    def serving(self) -> set[int]:
        """The gateway processes under the parent (not multiprocessing's resource tracker)."""
        return {pid for pid in descendants(self.parent.pid) if "multiprocessing.spawn" in command_line(pid)}

    def answered_by(self) -> int:
        """The pid of the process that answers ``GET /health`` on a new connection."""
        with httpx.Client(base_url=self.url, timeout=5) as fresh:
            response = fresh.get("/health")
        assert response.status_code == 200, response.text
        return int(response.headers[PID_HEADER])

    def all_answering(self, count: int) -> set[int] | None:
        """The serving pids, once ``count`` of them answer requests."""
        pids = self.serving()
        seen = {self.answered_by() for _ in range(40)}
        return pids if len(pids) == count and seen == pids else None


@pytest.fixture
def gateways(tmp_path: Path, rabbitmq: LocalNode) -> Iterator[Gateways]:
    running = Gateways(tmp_path, rabbitmq.url, workers=2)
    yield running
    for pid in living(descendants(running.parent.pid)):
        os.kill(pid, signal.SIGKILL)  # a failed test must not leave any behind
    running.stop_all()


def test_new_connections_reach_every_gateway_process(gateways: Gateways) -> None:
    serving = wait_for(lambda: gateways.all_answering(2), timeout=60, what="two gateway processes answering")
    assert gateways.parent.pid not in serving
    spread = Counter(gateways.answered_by() for _ in range(300))
    print(f"\n300 new connections over 2 gateway processes: {sorted(spread.values())}")
    assert set(spread) == serving
    # The kernel hashes each connection to one socket: far from one process taking them all.
    assert min(spread.values()) >= 60


def test_a_console_form_one_process_served_is_accepted_by_every_other(gateways: Gateways) -> None:
    # On loopback with no [admin] api_key: the processes' common secret signs the forms.
    serving = wait_for(lambda: gateways.all_answering(2), timeout=60, what="two gateway processes answering")
    with httpx.Client(base_url=gateways.url, timeout=5) as browser:
        page = browser.get("/_console/cron")  # its "fire now" forms carry the token
    token = re.search(r'name="csrf_token" value="([0-9a-f]{64})"', page.text)
    assert page.status_code == 200 and token, page.text[:300]
    statuses: Counter[int] = Counter()
    posted_to: set[int] = set()
    for _ in range(40):  # each on a new connection, so the kernel spreads them over the processes
        with httpx.Client(base_url=gateways.url, timeout=5, headers={"Origin": gateways.url}) as fresh:
            replay = fresh.post("/_console/dead-letters/NoSuchStep/replay", data={"csrf_token": token[1]})
            statuses[replay.status_code] += 1
            posted_to.add(int(fresh.get("/health").headers[PID_HEADER]))  # the same connection, the same process
    assert posted_to == serving
    assert statuses == {404: 40}  # every one past the token check, to "no such step"; none a 403


def test_a_killed_gateway_process_is_replaced_and_the_port_keeps_answering(gateways: Gateways) -> None:
    serving = wait_for(lambda: gateways.all_answering(2), timeout=60, what="two gateway processes answering")
    victim, survivor = sorted(serving)
    os.kill(victim, signal.SIGKILL)
    killed_at = time.monotonic()
    wait_for(lambda: not living({victim}), timeout=10, what="the killed process to be gone")
    answers = Counter(gateways.answered_by() for _ in range(50))
    assert victim not in answers and survivor in answers
    replaced = wait_for(lambda: gateways.all_answering(2), timeout=60, what="a replacement gateway process")
    print(f"\nreplacement answering {time.monotonic() - killed_at:.1f}s after the SIGKILL")
    assert survivor in replaced and victim not in replaced
    assert "exited with code -9; starting another" in gateways.log("gateway")


def test_sigterm_to_the_parent_stops_every_gateway_process(gateways: Gateways) -> None:
    serving = wait_for(lambda: gateways.all_answering(2), timeout=60, what="two gateway processes answering")
    started = time.monotonic()
    gateways.parent.send_signal(signal.SIGTERM)
    assert gateways.parent.wait(30) == 0
    assert living(serving) == set()
    print(f"\nSIGTERM: parent and both processes gone in {time.monotonic() - started:.1f}s")
    assert gateways.log("gateway").count("Finished server process") == 2
    with pytest.raises(httpx.TransportError):
        gateways.answered_by()


def test_one_worker_is_one_process(tmp_path: Path, rabbitmq: LocalNode) -> None:
    single = Gateways(tmp_path, rabbitmq.url, workers=1)
    try:
        assert single.answered_by() == single.parent.pid
        assert single.serving() == set()
    finally:
        single.stop_all()


def test_host_given_on_the_command_line_decides_who_may_open_the_console(tmp_path: Path, rabbitmq: LocalNode) -> None:
    # config.toml says loopback; --host says every address. With no [admin] api_key the console must be
    # closed, in the parent's first line and in every process that serves it.
    system = System(tmp_path, rabbitmq.url, flows=["tests.flows"])
    port = free_port()
    system.processes.start("public", "-m", "gateway", "--host", "0.0.0.0", "--port", str(port), "--workers", "2")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _answers(f"{url}/health"), timeout=60, what="the gateway on 0.0.0.0")
        refused = {httpx.get(f"{url}/_console/traces", timeout=5).status_code for _ in range(20)}
        assert refused == {403}
        assert httpx.get(f"{url}/metrics", timeout=5).status_code == 403
        assert f"Console: http://127.0.0.1:{port}/_console/ (closed: set [admin] api_key" in system.log("public")
    finally:
        system.stop_all()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code in (200, 503)
    except httpx.TransportError:
        return False
