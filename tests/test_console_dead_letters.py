"""The console's Queues and Dead letters pages on a real RabbitMQ with a real worker: counts, list,
show, replay one, replay all, purge (confirmed only), and forged POSTs that change nothing."""

from __future__ import annotations

import re
import uuid

import pytest
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

from conveyor.console import console_app
from devtools.processes import wait_for
from tests.flows.replay_probes import DONE, FIXED
from tests.helpers import step_queue
from tests.operator_helpers import empty_queues, forget_records, queue_depth, runtime_for, stop, with_management_url
from tests.system import System

STEP = "FailsUntilFixed"
TOPIC = "test.fails-until-fixed"
ORIGIN = {"Origin": "http://testserver"}


@pytest.fixture(scope="module")
def system(rabbitmq, tmp_path_factory):
    running = System(
        tmp_path_factory.mktemp("console-dead-letters"),
        rabbitmq.url,
        extra_config="[steps.FailsUntilFixed]\nmax_retries = 0\n",
    )
    with_management_url(running, rabbitmq.management_url)
    running.start_workers(processes=1, threads=2)
    yield running
    stop(running)
    empty_queues(rabbitmq.url, STEP)


@pytest.fixture(scope="module")
def runtime(system):
    with runtime_for(system) as built:
        yield built


@pytest.fixture
def client(runtime, system, rabbitmq):
    empty_queues(rabbitmq.url, STEP)
    forget_records(system)
    app = Starlette(routes=[Mount("/_console", app=console_app(runtime, None))])
    return TestClient(app, raise_server_exceptions=False)


def dead_depth(rabbitmq) -> int:
    return queue_depth(rabbitmq.url, f"{step_queue(STEP)}.XQ")


def kill(runtime, rabbitmq, count: int) -> list[str]:
    """The message ids of ``count`` probes that failed for good, once all are in the .XQ."""
    sent = [runtime.publisher.send(STEP, {"id": uuid.uuid4().hex}, topic=TOPIC) for _ in range(count)]
    wait_for(lambda: dead_depth(rabbitmq) == count, timeout=15)
    return sent


def csrf(client) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/_console/cron").text)
    assert found
    return found[1]


def post(client, path: str, **form: str):
    return client.post(path, data={"csrf_token": csrf(client), **form}, headers=ORIGIN, follow_redirects=False)


def test_queues_page_shows_the_dead_count_and_links_to_the_management_ui(client, runtime, rabbitmq):
    kill(runtime, rabbitmq, 2)

    def row() -> str:
        page = client.get("/_console/queues")
        assert page.status_code == 200
        found = re.search(rf'<tr data-step="{STEP}">(.*?)</tr>', page.text, re.S)
        return found[1] if found else ""

    # The management API refreshes its figures every few seconds: wait for them to show both.
    shown = wait_for(lambda: (r := row()) and ">2</a>" in r and r, timeout=20, interval=0.5)
    assert f'href="{rabbitmq.management_url.rstrip("/")}/#/queues/%2F/{step_queue(STEP)}"' in shown
    assert re.search(r'class="num consumers">[1-9]', shown)  # the worker consumes the step's queue
    print("queues row:", re.sub(r"\s+", " ", shown))
    assert re.search(r'<td class="num">\d+\.\d</td>', shown)  # a rate from the management API, not "-"
    assert "Queue figures are not available" not in client.get("/_console/queues").text


def test_dead_letters_listed_shown_and_replayed_one_then_all(client, runtime, system, rabbitmq):
    first, second = kill(runtime, rabbitmq, 2)

    overview = client.get("/_console/dead-letters")
    assert overview.status_code == 200
    assert re.search(rf'>{STEP}</a></td><td class="num">2<', overview.text)
    listing = client.get(f"/_console/dead-letters/{STEP}")
    assert listing.status_code == 200
    for message_id in (first, second):
        assert f'data-message="{message_id}"' in listing.text
    assert "RuntimeError: not fixed yet:" in listing.text
    assert '<span class="dead-count">2</span>' in listing.text

    shown = client.get(f"/_console/dead-letters/{STEP}/{first}")
    assert shown.status_code == 200
    probe = re.search(r"not fixed yet: ([0-9a-f]{32})", shown.text)
    assert probe
    assert f'<pre class="traceback">RuntimeError: not fixed yet: {probe[1]}' in shown.text
    assert f"&#34;id&#34;: &#34;{probe[1]}&#34;" in shown.text  # the data, as JSON text
    trace = re.search(r'href="/_console/traces/([0-9a-f]+)"', shown.text)
    assert trace
    assert client.get(f"/_console/dead-letters/{STEP}/no-such-message").status_code == 404

    system.state.set(FIXED, probe[1], True)
    replayed = post(client, f"/_console/dead-letters/{STEP}/{first}/replay")
    assert replayed.status_code == 303
    assert replayed.headers["location"].startswith(f"/_console/dead-letters/{STEP}?flash=Replayed+message+{first}")
    after = client.get(replayed.headers["location"])
    assert f"Replayed message {first} as message" in after.text
    assert f'href="/_console/traces/{trace[1]}"' in after.text  # the replay stays in the dead message's trace
    done = wait_for(lambda: system.state.get(DONE, probe[1]), timeout=15)
    assert (done["attempt"], done["replayedFromMessage"], done["traceId"]) == (1, first, trace[1])
    assert dead_depth(rabbitmq) == 1
    assert post(client, f"/_console/dead-letters/{STEP}/{first}/replay").status_code == 404  # gone: not twice

    other = re.search(r"not fixed yet: ([0-9a-f]{32})", client.get(f"/_console/dead-letters/{STEP}/{second}").text)
    assert other
    system.state.set(FIXED, other[1], True)
    all_replayed = post(client, f"/_console/dead-letters/{STEP}/replay")
    assert all_replayed.status_code == 303
    assert "Replayed 1 dead message(s)" in client.get(all_replayed.headers["location"]).text
    wait_for(lambda: system.state.get(DONE, other[1]), timeout=15)
    assert dead_depth(rabbitmq) == 0


def test_purge_needs_the_step_name_and_forged_posts_change_nothing(client, runtime, rabbitmq):
    [message_id] = kill(runtime, rabbitmq, 1)

    refused = post(client, f"/_console/dead-letters/{STEP}/purge")
    assert refused.status_code == 400 and "Nothing was purged" in refused.text
    assert post(client, f"/_console/dead-letters/{STEP}/purge", confirm="Wrong").status_code == 400
    forged = [
        client.post(f"/_console/dead-letters/{STEP}/purge", data={"confirm": STEP}, headers=ORIGIN),
        client.post(f"/_console/dead-letters/{STEP}/replay", headers={"Origin": "http://evil.example"}),
        client.post(
            f"/_console/dead-letters/{STEP}/{message_id}/replay", data={"csrf_token": "f" * 64}, headers=ORIGIN
        ),
    ]
    assert [r.status_code for r in forged] == [403, 403, 403]
    assert dead_depth(rabbitmq) == 1
    assert runtime.failures.get(message_id) is not None

    purged = post(client, f"/_console/dead-letters/{STEP}/purge", confirm=STEP)
    assert purged.status_code == 303
    assert "Purged 1 dead message(s) and 1 failure record(s)" in client.get(purged.headers["location"]).text
    assert dead_depth(rabbitmq) == 0
    assert "No dead messages." in client.get(f"/_console/dead-letters/{STEP}").text
