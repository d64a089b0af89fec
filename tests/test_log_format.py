"""One log format in every process (text, or JSON lines when asked), and quiet logs by default."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from apscheduler.schedulers.background import BackgroundScheduler
from pydantic import BaseModel

from conveyor import Context, Registry, queue, step
from conveyor.logs import UVICORN_LOGGERS, JsonFormatter, StepLogger, setup_logging
from devtools.processes import wait_for
from tests.helpers import drain, memory_runtime, running_worker

ROOT = Path(__file__).resolve().parents[1]
#: Conveyor's text line: ``2026-01-05 10:00:00,123 INFO    logger message``.
TEXT_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) +\S+ \S")

# What a process of each kind has done to logging before Conveyor boots in it: the `dramatiq`
# command's worker process (its own function, run for real), and uvicorn's own config.
LIBRARIES_FIRST = """
import argparse, logging, logging.config, sys
import dramatiq.cli, uvicorn.config
dramatiq.cli.setup_worker_logging(argparse.Namespace(verbose=0, skip_logging=False), 0, sys.stderr)
logging.config.dictConfig(uvicorn.config.LOGGING_CONFIG)
"""

LOG_FROM_EVERY_LIBRARY = """
from conveyor.logs import StepLogger, setup_logging
setup_logging("INFO", format=FORMAT)
logging.getLogger("dramatiq.worker.WorkerThread").info("Worker thread is ready")
logging.getLogger("dramatiq.MainProcess").warning("Dramatiq speaks")
logging.getLogger("uvicorn.error").info("Started server process [%d]", 42)
logging.getLogger("apscheduler.scheduler").warning("Run time of job was missed")
logging.getLogger("conveyor.gateway").info("Conveyor speaks")
StepLogger("CreateOrder", "t" * 32, json_lines=FORMAT == "json", message="m-1").info("Order created", orderId="o-1")
"""


def run_process(format: str, extra: str = "") -> list[str]:
    """The stderr lines of a Python process that sets logging up as the libraries do, then as Conveyor does."""
    code = LIBRARIES_FIRST + f"FORMAT = {format!r}\n" + LOG_FROM_EVERY_LIBRARY + textwrap.dedent(extra)
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stderr.splitlines()


def test_every_library_logs_in_conveyors_text_format_after_dramatiq_and_uvicorn_set_logging_up():
    lines = run_process("text")
    print("\n".join(lines))
    assert len(lines) == 6, lines  # one each: no line printed twice by a library's own handler
    assert all(TEXT_LINE.match(line) for line in lines), lines
    assert " WARNING dramatiq.MainProcess Dramatiq speaks" in lines[1]
    assert " INFO    uvicorn.error Started server process [42]" in lines[2]
    assert lines[5].endswith("Order created orderId=o-1 step=CreateOrder trace=" + "t" * 32 + " message=m-1")


def test_json_format_makes_every_line_one_json_object_with_the_step_fields_and_the_traceback():
    lines = run_process(
        "json",
        """
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("dramatiq.broker").exception("Unexpected failure")
        """,
    )
    print("\n".join(lines))
    records = [json.loads(line) for line in lines]  # every line, from every library, parses
    assert [r["logger"] for r in records] == [
        "dramatiq.worker.WorkerThread",
        "dramatiq.MainProcess",
        "uvicorn.error",
        "apscheduler.scheduler",
        "conveyor.gateway",
        "conveyor.step.CreateOrder",
        "dramatiq.broker",
    ]
    assert all({"ts", "level", "logger", "msg", "pid"} <= r.keys() for r in records)
    assert len({r["pid"] for r in records}) == 1
    assert records[2]["msg"] == "Started server process [42]"
    step_line = records[5]
    # The step's own fields at the top level, its message plain: not a JSON string inside the JSON.
    assert step_line["msg"] == "Order created"
    assert (step_line["orderId"], step_line["step"], step_line["message"]) == ("o-1", "CreateOrder", "m-1")
    assert step_line["trace"] == "t" * 32
    assert records[6]["level"] == "ERROR"
    assert records[6]["traceback"].startswith("Traceback (most recent call last):")
    assert records[6]["traceback"].endswith("ValueError: boom")
    assert "traceback" not in step_line


@pytest.fixture
def restored_logging() -> Iterator[None]:
    """Puts back what setup_logging changes in this (the test run's) process."""
    root = logging.getLogger()
    formatters = [(handler, handler.formatter) for handler in root.handlers]
    names = ["apscheduler", "pika", *UVICORN_LOGGERS]
    levels = {name: logging.getLogger(name).level for name in names}
    propagate = {name: logging.getLogger(name).propagate for name in names}
    level = root.level
    yield
    root.setLevel(level)
    for handler, formatter in formatters:
        handler.setFormatter(formatter)
    for name in names:
        logging.getLogger(name).setLevel(levels[name])
        logging.getLogger(name).propagate = propagate[name]


def test_a_field_named_like_the_lines_own_keys_does_not_replace_them():
    logger = logging.getLogger("conveyor.step.Clash")
    record = logger.makeRecord(
        logger.name,
        logging.INFO,
        __file__,
        1,
        "ignored",
        (),
        None,
        extra={"conveyor_message": "Hello", "conveyor_fields": {"level": "vip", "pid": 7, "step": "Clash"}},
    )
    line = json.loads(JsonFormatter().format(record))
    assert (line["level"], line["msg"], line["field.level"], line["field.pid"], line["step"]) == (
        "INFO",
        "Hello",
        "vip",
        7,
        "Clash",
    )


def test_uvicorns_access_log_stays_off_when_uvicorn_turned_it_off(restored_logging):
    access = logging.getLogger("uvicorn.access")
    access.handlers.clear()
    access.propagate = False  # what uvicorn does with access_log=False
    setup_logging("INFO")
    assert access.propagate is False and not access.handlers


class Order(BaseModel):
    orderId: str
    email: str


def test_a_retried_failure_is_one_warning_line_per_attempt_without_a_traceback(tmp_path, caplog, restored_logging):
    setup_logging("INFO")
    registry = Registry()

    @step(name="ProcessOrder", triggers=[queue("order.created", input=Order)], registry=registry)
    def process(order: Order, ctx: Context) -> None:
        raise ValueError("boom")

    settings = '[steps.ProcessOrder]\nmax_retries = 2\nretry_delay = 1\nbackoff = "fixed"\n'
    runtime = memory_runtime(tmp_path, registry, settings)
    caplog.set_level(logging.INFO)
    caplog.clear()  # the in-memory broker's warning at start
    message_id = runtime.publisher.publish("order.created", {"orderId": "o-1", "email": "a@example.com"})[0]
    with running_worker(runtime):
        drain(runtime, "ProcessOrder")
    runtime.close()

    loud = [record for record in caplog.records if record.levelno >= logging.WARNING]
    print("\n".join(f"{r.levelname} {r.name} {r.getMessage()}" for r in loud))
    assert [record.getMessage() for record in loud] == [
        f"ProcessOrder[{message_id}] failed on attempt 1 of 3: ValueError: boom; retrying in 1 ms",
        f"ProcessOrder[{message_id}] failed on attempt 2 of 3: ValueError: boom; retrying in 1 ms",
        f"ProcessOrder[{message_id}] failed for good after 3 attempt(s): ValueError: boom; kept in "
        f"{runtime.actors['ProcessOrder'].queue_name}.XQ",
    ]
    assert all(record.levelno == logging.WARNING and record.exc_info is None for record in loud)
    assert not any("a@example.com" in record.getMessage() for record in caplog.records)


def test_apscheduler_job_runs_log_nothing_at_info(caplog, restored_logging):
    setup_logging("INFO")
    caplog.set_level(logging.INFO)
    ran = threading.Event()
    scheduler = BackgroundScheduler()
    scheduler.start()
    try:
        scheduler.add_job(ran.set)
        assert ran.wait(10)
        # The scheduler's thread forgets the one-off job after it ran; shut down after that, not while.
        wait_for(lambda: scheduler.get_jobs() == [], 10, what="the job to be forgotten")
    finally:
        scheduler.shutdown(wait=True)
    assert [r.getMessage() for r in caplog.records if r.name.startswith("apscheduler")] == []


def test_an_outbox_sweep_with_nothing_to_publish_logs_nothing(tmp_path, caplog, restored_logging):
    runtime = memory_runtime(tmp_path, Registry())
    caplog.set_level(logging.DEBUG, logger="conveyor")
    try:
        assert runtime.outbox.sweep(older_than=0) == 0
    finally:
        runtime.close()
    assert [r.getMessage() for r in caplog.records if r.name == "conveyor.outbox"] == []


def test_step_logger_lines_read_the_same_under_the_json_formatter_whether_or_not_json_lines(caplog):
    caplog.set_level(logging.INFO, logger="conveyor.step")
    for json_lines in (False, True):
        StepLogger("Ship", "t" * 32, json_lines=json_lines).info("Shipped", box=3)
    first, second = (json.loads(JsonFormatter().format(record)) for record in caplog.records)
    del first["ts"], second["ts"]
    assert first == second
    assert first["msg"] == "Shipped" and first["box"] == 3


def test_a_message_that_fails_its_schema_is_one_warning_line_naming_its_dead_letter_queue_and_topic(
    tmp_path, caplog, restored_logging
):
    setup_logging("INFO")
    registry = Registry()

    @step(name="ProcessOrder", triggers=[queue("order.created", input=Order)], registry=registry)
    def process(order: Order, ctx: Context) -> None:
        raise AssertionError("never runs: the input fails its schema")

    @step(name="OrderFailed", triggers=[queue("order.failed")], registry=registry)
    def failed(record: dict[str, object], ctx: Context) -> None:
        pass

    runtime = memory_runtime(tmp_path, registry, '[steps.ProcessOrder]\ndead_letter_queue = "order.failed"\n')
    caplog.set_level(logging.INFO)
    caplog.clear()
    message_id = runtime.publisher.publish("order.created", {"orderId": 7})[0]
    with running_worker(runtime):
        drain(runtime, "ProcessOrder", "OrderFailed")
    runtime.close()

    loud = [record for record in caplog.records if record.levelno >= logging.WARNING]
    print("\n".join(f"{r.levelname} {r.name} {r.getMessage()}" for r in loud))
    [line] = [record.getMessage() for record in loud]
    assert line.startswith(f"ProcessOrder[{message_id}] failed for good after 1 attempt(s): InvalidInput: ")
    assert line.endswith(
        f"; kept in {runtime.actors['ProcessOrder'].queue_name}.XQ, its record sent to topic 'order.failed'"
    )
