"""The console in a real Chromium, against real gateway and worker processes on RabbitMQ.

Each test does what an operator does (POST to the system, open a console page, click) and asserts
what the page shows. With CONVEYOR_SCREENSHOTS=1 the screenshots go to docs/console/ for
docs/console.md. Tracing writes in batches, so every wait polls the console's JSON API (or the
page) until what it waits for is there.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Dialog, Page, expect

from tests.browser.conftest import NewPage, Screenshot, page_errors
from tests.browser.system import (
    CONSOLE,
    fail_an_order,
    fixed_stock,
    order_of,
    order_status,
    spans_of,
    start_open_gateway,
    start_system,
    trace_json,
    wait_span,
)
from tests.system import System, wait_for

#: The three log lines of the pets seed's POST /pets (flows/pets/create_pet.py, set_next_feeding_reminder.py).
PET_LOG_LINES = ("Pet created", "Setting next feeding reminder", "Next feeding reminder set")
#: The order flow's steps as the seed has them, and its dead-letter handler (flows/orders/).
ORDER_STEPS = ("CreateOrder", "ProcessOrder", "UpdateInventory", "SendNotification", "GetOrder")
PAYLOAD = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">'
KEY = "browser-admin-key-" + "0123456789abcdef"
#: Long enough for a span to travel from a worker through its recorder to the store and the page.
SLOW = 30_000


@pytest.fixture(scope="module")
def system(rabbitmq: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    running = start_system(tmp_path_factory.mktemp("console-browser"), rabbitmq.url, rabbitmq.management_url)
    yield running
    running.stop_all()


def new_pet(system: System, name: str = "Buddy") -> str:
    """POST /pets as docs/pets.md does; returns the request's trace id (its x-request-id)."""
    answer = system.http.post("/pets", json={"name": name, "species": "dog", "ageMonths": 24})
    assert answer.status_code == 201, answer.text
    return answer.headers["x-request-id"]


def logged(system: System, trace_id: str, *messages: str) -> bool:
    trace = trace_json(system, trace_id)
    return trace is not None and set(messages) <= {line["message"] for line in trace["logs"]}


def span_row(page: Page, kind: str, step: str) -> Any:
    """The waterfall rows of ``kind`` spans (``http``, ``enqueue``, ``run``) whose summary names ``step``."""
    return page.locator(f"#waterfall li.span.{kind}").filter(has=page.locator("summary", has_text=f"step {step}"))


def ok_runs(system: System, trace_id: str, step: str) -> list[dict[str, Any]]:
    return [s for s in spans_of(system, trace_id) if (s["kind"], s["step"], s["status"]) == ("run", step, "ok")]


def accept_dialogs(page: Page) -> None:
    def accept(dialog: Dialog) -> None:
        dialog.accept()

    page.on("dialog", accept)


def test_the_pets_seeds_trace_shows_the_request_its_background_job_and_its_log_lines(
    system: System, new_page: NewPage, screenshot: Screenshot
) -> None:
    trace_id = new_pet(system)
    wait_span(system, trace_id, step="SetNextFeedingReminder", kind="run", status="ok", what="the reminder's run")
    wait_for(lambda: logged(system, trace_id, *PET_LOG_LINES), 30, what="the seed's three log lines")

    page = new_page(system.url)
    page.goto(f"{CONSOLE}/traces/{trace_id}")

    expect(page.get_by_role("heading", level=1)).to_have_text("Trace POST /pets")
    expect(page.locator("#waterfall li.span.http .name")).to_have_text("POST /pets")
    enqueue = span_row(page, "enqueue", "SetNextFeedingReminder")
    expect(enqueue).to_have_count(1)
    expect(enqueue.locator(".name")).to_contain_text("send ")
    run = span_row(page, "run", "SetNextFeedingReminder")
    expect(run).to_have_count(1)
    expect(run).to_have_class(re.compile(r"\bstatus-ok\b"))
    expect(run.locator("summary .badge")).to_have_text("ok")
    expect(page.locator(".summary strong")).to_have_text(re.compile(r"^\d+(\.\d+)? (ms|s)$"))  # the total time
    for message in PET_LOG_LINES:
        expect(page.locator("#waterfall ul.logs li", has_text=message)).to_be_visible()
    # Each line sits under the span it was logged in: the request's, then the job's.
    expect(page.locator("#waterfall li.span.http ul.logs")).to_contain_text("Pet created")
    expect(run.locator("ul.logs")).to_contain_text("Next feeding reminder set")
    assert page_errors(page) == []
    screenshot(page, "trace-pets")


def test_the_order_flows_diagram_shows_its_steps_and_the_dead_letter_handler(
    system: System, new_page: NewPage, screenshot: Screenshot
) -> None:
    # Some traffic first, so the live counts have something to count: one order that completes, one that dies.
    product = f"counted-{uuid.uuid4().hex[:8]}"
    system.state.set("inventory", product, fixed_stock(product))
    good = system.http.post("/orders", json=order_of(product)).json()["orderId"]
    fail_an_order(system, f"counted-broken-{uuid.uuid4().hex[:8]}")
    wait_for(lambda: order_status(system, good) == "completed", 30, what=f"order {good} to complete")
    page = new_page(system.url)
    page.goto(f"{CONSOLE}/flows/order-processing")

    diagram = page.locator(".diagram svg")
    expect(diagram).to_be_visible()
    labels = diagram.locator("g.node text.label")
    for step in (*ORDER_STEPS, "HandleFailedOrder"):
        expect(labels.filter(has_text=re.compile(f"^{step}$"))).to_be_visible()
    dead_topic = diagram.locator("g.node.dead-letter")
    expect(dead_topic.locator("text.label")).to_have_text("process-order.failed")
    expect(diagram.locator("g.edge.dead")).not_to_have_count(0)
    # The steps table under the diagram names every step, linked to its traces.
    for step in (*ORDER_STEPS, "HandleFailedOrder"):
        expect(page.get_by_role("link", name=step, exact=True)).to_be_visible()
    # ProcessOrder's row counts the runs above: the dead one among them.
    counts = page.locator("tr", has=page.get_by_role("link", name="ProcessOrder", exact=True)).locator("td")
    assert int(counts.nth(1).inner_text()) >= 3 and int(counts.nth(4).inner_text()) >= 1  # runs, dead
    assert page_errors(page) == []
    # The whole flow fits the page: a wide diagram is scaled down to its width, not cut off.
    box, handler = diagram.bounding_box(), diagram.locator("g.node", has_text="HandleFailedOrder").bounding_box()
    assert box is not None and handler is not None and handler["x"] + handler["width"] <= box["x"] + box["width"] + 1
    screenshot(page, "flow-orders")


def test_a_failed_order_is_shown_attempt_by_attempt_replayed_from_the_console_and_completes(
    system: System, new_page: NewPage, screenshot: Screenshot
) -> None:
    product = f"broken-{uuid.uuid4().hex[:8]}"
    order_id, trace_id = fail_an_order(system, product)
    dead = wait_span(system, trace_id, step="ProcessOrder", status="dead", what="the dead attempt")
    first = wait_span(system, trace_id, step="ProcessOrder", status="error", what="the first attempt")
    # The retry's wait began when its backoff ended (RabbitMQ's delay queue drops the eta on the way).
    assert dead["startedAt"] - dead["queueDelayMs"] / 1000 > first["startedAt"] + first["durationMs"] / 1000

    trace_page = new_page(system.url)
    trace_page.goto(f"{CONSOLE}/traces/{trace_id}")
    runs = span_row(trace_page, "run", "ProcessOrder")
    expect(runs).to_have_count(2)  # the first delivery and its one retry, each a bar of its own
    expect(runs.nth(0)).to_have_class(re.compile(r"\bstatus-error\b"))
    expect(runs.nth(1)).to_have_class(re.compile(r"\bstatus-dead\b"))
    for n, run in enumerate((runs.nth(0), runs.nth(1)), start=1):
        expect(run.locator(".attempt")).to_have_text(f"attempt {n}")
        expect(run.locator(".bar.error, .bar.dead")).to_have_count(1)
        expect(run.locator("div.error")).to_contain_text("AttributeError")
    expect(trace_page.locator(".summary .badge")).to_have_text("failed")
    screenshot(trace_page, "trace-failed")

    listing = new_page(system.url)
    listing.goto(f"{CONSOLE}/dead-letters")
    row = listing.locator(f"tr[data-message='{dead['messageId']}']")
    expect(row).to_be_visible()
    expect(row.locator("td.error")).to_contain_text("AttributeError")
    screenshot(listing, "dead-letters")

    row.get_by_role("link", name=dead["messageId"]).click()
    expect(listing.get_by_role("heading", level=1)).to_have_text(f"Dead message {dead['messageId']}")
    expect(listing.locator("dl.attrs")).to_contain_text("ProcessOrder")
    expect(listing.locator("dl.attrs")).to_contain_text(trace_id)
    expect(listing.locator("pre.data")).to_contain_text(order_id)
    screenshot(listing, "dead-letter")

    system.state.set("inventory", product, fixed_stock(product))  # the operator fixes the fault
    accept_dialogs(listing)
    listing.get_by_role("button", name="Replay").click()
    expect(listing.locator("p.flash")).to_contain_text(f"Replayed message {dead['messageId']}")
    expect(listing.locator("p.flash")).to_contain_text(trace_id)

    wait_for(lambda: order_status(system, order_id) == "completed", 30, what=f"order {order_id} to complete")
    # The trace page opened before the replay shows the replayed run without a reload.
    replayed = runs.filter(has=trace_page.locator("summary .badge", has_text=re.compile("^ok$")))
    expect(replayed).to_have_count(1, timeout=SLOW)
    expect(replayed.locator(".attempt")).to_have_text("attempt 1")
    assert page_errors(trace_page) == [] and page_errors(listing) == []
    # For the screenshot, a still page: every span of the repair stored, then one reload.
    wait_span(system, trace_id, step="UpdateInventory", kind="run", status="ok", what="UpdateInventory's run")
    wait_for(lambda: len(ok_runs(system, trace_id, "SendNotification")) == 2, 30, what="both notifications")
    trace_page.reload()
    expect(replayed).to_have_count(1)
    expect(trace_page.locator(".summary .badge")).to_have_text("retried")  # nothing stays failed
    replayed.evaluate("row => row.scrollIntoView({block: 'start'})")
    screenshot(trace_page, "trace-replayed")


def test_the_traces_filters(system: System, new_page: NewPage, screenshot: Screenshot) -> None:
    pet_name = f"Filterable-{uuid.uuid4().hex[:8]}"
    pets_trace = new_pet(system, pet_name)
    wait_span(system, pets_trace, step="SetNextFeedingReminder", kind="run", status="ok", what="the pet's job")
    _, failed_trace = fail_an_order(system, f"filtered-{uuid.uuid4().hex[:8]}")
    page = new_page(system.url)

    page.goto(f"{CONSOLE}/traces")
    page.get_by_label("Status").select_option("failed")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"status=failed"))
    table = page.locator("table.traces")
    expect(table.locator("tr", has_text=failed_trace)).to_have_count(1)
    expect(table.locator("tr", has_text=pets_trace)).to_have_count(0)
    expect(table.locator("tbody .badge").filter(has_not_text="failed")).to_have_count(0)

    page.goto(f"{CONSOLE}/traces")
    page.get_by_label("Text").fill(pet_name)  # a substring of the enqueued payload
    page.get_by_role("button", name="Filter").click()
    expect(table.locator("tbody tr")).to_have_count(1)
    expect(table.locator("tbody tr")).to_contain_text(pets_trace)

    answer = page.goto(f"{CONSOLE}/traces?min_duration=fast")
    assert answer is not None and answer.status == 400
    expect(page.locator(".problem")).to_contain_text("min_duration")
    answer = page.goto(f"{CONSOLE}/traces?status=sideways")
    assert answer is not None and answer.status == 400
    expect(page.locator(".problem")).to_contain_text("status must be one of ok, retried, failed")

    page.goto(f"{CONSOLE}/traces")
    expect(table.locator("tr", has_text=pets_trace)).to_have_count(1)
    assert page_errors(page) == []
    screenshot(page, "traces")


def test_a_payload_holding_markup_is_shown_as_text_on_its_trace_and_state_pages(
    system: System, new_page: NewPage
) -> None:
    answer = system.http.post("/pets", json={"name": PAYLOAD, "species": "cat", "ageMonths": 3})
    assert answer.status_code == 201, answer.text
    pet_id, trace_id = answer.json()["id"], answer.headers["x-request-id"]
    wait_span(system, trace_id, step="SetNextFeedingReminder", kind="run", status="ok", what="the reminder's run")
    wait_for(lambda: logged(system, trace_id, "Pet created"), 30, what="the 'Pet created' line")
    page = new_page(system.url)

    page.goto(f"{CONSOLE}/traces/{trace_id}")
    # The log line's name= field holds the markup; the page shows it as characters.
    expect(page.locator("#waterfall .field", has_text="name=")).to_have_text(f"name={PAYLOAD}")
    assert page.locator("#waterfall script, #waterfall img").count() == 0
    assert page.evaluate("typeof window.__pwned") == "undefined"

    page.goto(f"{CONSOLE}/state/pets/{pet_id}")
    expect(page.locator("main")).to_contain_text(json.dumps(PAYLOAD))  # the value, as JSON
    assert page.locator("main script, main img").count() == 0
    page.goto(f"{CONSOLE}/state/pets")
    expect(page.locator("main")).to_contain_text(json.dumps(PAYLOAD))
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert page_errors(page) == []


def test_off_loopback_the_console_needs_the_key(system: System, new_page: NewPage, screenshot: Screenshot) -> None:
    keyed = start_open_gateway(system, "gateway-keyed", api_key=KEY)
    page = new_page(keyed)

    page.goto(f"{CONSOLE}/")
    expect(page).to_have_url(re.compile(r"/_console/login\?next="))
    expect(page.get_by_role("heading", level=1)).to_have_text("Log in")
    expect(page.locator("main")).to_contain_text("[admin] api_key")
    screenshot(page, "login", full_page=True)

    page.get_by_label("API key").fill("not-the-key-at-all-0000")
    page.get_by_role("button", name="Log in").click()
    expect(page.locator(".problem")).to_have_text("That is not the [admin] api_key of this gateway.")
    answer = page.goto(f"{CONSOLE}/traces")  # still not logged in
    assert answer is not None and answer.url.startswith(f"{keyed}{CONSOLE}/login")

    page.get_by_label("API key").fill(KEY)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{keyed}{CONSOLE}/traces")
    expect(page.get_by_role("heading", level=1)).to_have_text("Traces")
    expect(page.get_by_role("button", name="Log out")).to_be_visible()

    closed = start_open_gateway(system, "gateway-closed", api_key=None)
    page = new_page(closed)
    answer = page.goto(f"{CONSOLE}/traces")
    assert answer is not None and answer.status == 403
    expect(page.locator("main")).to_contain_text("[admin] api_key")
    assert page_errors(page) == []
    system.stop("gateway-keyed")
    system.stop("gateway-closed")


def test_a_trace_page_shows_later_spans_without_a_reload(system: System, new_page: NewPage) -> None:
    system.stop("workers")  # so the request's background job cannot run before the page is open
    try:
        trace_id = new_pet(system, "Later")
        wait_span(system, trace_id, kind="enqueue", step="SetNextFeedingReminder", what="the enqueue span")
        page = new_page(system.url)
        page.goto(f"{CONSOLE}/traces/{trace_id}")
        expect(page.locator("#waterfall[data-live='1']")).to_have_count(1)
        expect(span_row(page, "enqueue", "SetNextFeedingReminder")).to_have_count(1)
        expect(span_row(page, "run", "SetNextFeedingReminder")).to_have_count(0)
        navigations: list[str] = []
        page.on("framenavigated", lambda frame: navigations.append(frame.url))
    finally:
        system.start_workers(processes=1, threads=4)

    run = span_row(page, "run", "SetNextFeedingReminder")
    expect(run).to_have_count(1, timeout=SLOW)
    expect(run.locator("summary .badge")).to_have_text("ok", timeout=SLOW)
    expect(page.locator("#waterfall ul.logs li", has_text="Next feeding reminder set")).to_be_visible(timeout=SLOW)
    assert navigations == []  # the page polled and swapped its waterfall; it never reloaded
    assert page_errors(page) == []


PAGES = {
    # name: (path, heading, text the page shows from this system)
    "logs": ("/logs", "Logs", "Pet created"),
    "queues": ("/queues", "Queues", "ProcessOrder"),
    "state": ("/state", "State", "pets"),
    "endpoints": ("/endpoints", "Endpoints", "POST"),
    "api-reference": ("/api-reference", "API reference", "/orders"),
    "cron": ("/cron", "Cron", "DeletionReaper"),
}


@pytest.mark.parametrize("name", PAGES)
def test_the_other_pages_render(system: System, new_page: NewPage, screenshot: Screenshot, name: str) -> None:
    path, heading, shown = PAGES[name]
    if name == "logs":
        trace_id = new_pet(system, "Logged")
        wait_for(lambda: logged(system, trace_id, "Pet created"), 30, what="a log line")
    page = new_page(system.url)
    if name == "cron":
        # Fired by hand from the page: its fire and the run's outcome are listed under the step.
        page.goto(f"{CONSOLE}{path}")
        accept_dialogs(page)
        page.locator("section.cron-step[data-step='DeletionReaper']").get_by_role("button", name="Fire now").click()
        # Taken to the fire's trace (or back here, saying it fired, if the trace is not stored yet).
        expect(page.locator("h1")).to_have_text(re.compile(r"^(Trace cron DeletionReaper|Cron)$"))
    answer = page.goto(f"{CONSOLE}{path}")
    if name == "cron":
        fired = page.locator("section.cron-step[data-step='DeletionReaper'] table.cron-fires tbody tr")
        expect(fired).to_have_count(1)
        expect(fired).to_contain_text("by hand")
        fired.evaluate("row => row.closest('section').scrollIntoView({block: 'start'})")  # in the screenshot
    assert answer is not None and answer.status == 200
    expect(page.get_by_role("heading", level=1)).to_have_text(heading)
    expect(page.locator("main")).to_contain_text(shown)
    expect(page.locator("nav a[aria-current='page']")).to_have_count(0 if name == "api-reference" else 1)
    assert page_errors(page) == []
    screenshot(page, name)
