"""``python -m actors traces`` and ``trace``: what a run of the flow left, read from a shell."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conveyor.errors import ConveyorError
from conveyor.ops.cli import _parser, _run
from conveyor.testing import FlowEnvironment

ROOT = Path(__file__).resolve().parent.parent

SETTINGS = """
[steps.RunJob]
max_retries = 1
backoff = "fixed"
retry_delay = 10
dead_letter_queue = "job.dead"
"""


@pytest.fixture(scope="module")
def flow():
    with FlowEnvironment("tests.tracing_flow", settings=SETTINGS) as running:
        ok = running.http.post("/jobs", json={"id": "fine"}).headers["x-request-id"]
        bad = running.http.post("/jobs", json={"id": "<b>broken</b>", "fail": True}).headers["x-request-id"]
        running.join(fail_fast=False)
        running.runtime.recorder.flush()
        running.ids = {"ok": ok, "bad": bad}
        yield running


def run(flow, *argv: str) -> str:
    return _run(flow.runtime, _parser().parse_args(list(argv)))


def test_traces_lists_the_newest_first_and_filters_like_the_console(flow):
    lines = run(flow, "traces").splitlines()
    assert lines[0].split()[:4] == ["STARTED", "(UTC)", "TRACE", "STATUS"]
    assert [line.split()[2] for line in lines[1:3]] == [flow.ids["bad"], flow.ids["ok"]]
    assert lines[-1] == "(page 1 of 1, 2 traces; --page N for another)"

    failed = json.loads(run(flow, "traces", "--status", "failed", "--json"))
    assert [t["traceId"] for t in failed["traces"]] == [flow.ids["bad"]] and failed["total"] == 1
    assert json.loads(run(flow, "traces", "--text", "<b>broken", "--json"))["total"] == 1
    assert run(flow, "traces", "--step", "NoSuchStep") == "No traces match."


def test_a_bad_filter_names_its_option(flow):
    with pytest.raises(ConveyorError, match=r"--since: since must be an ISO datetime"):
        run(flow, "traces", "--since", "yesterday-ish")
    with pytest.raises(ConveyorError, match=r"--status: status must be one of ok, retried, failed"):
        run(flow, "traces", "--status", "boom")


def test_trace_prints_the_timeline_with_each_attempt_its_error_and_the_logs(flow):
    text = run(flow, "trace", flow.ids["bad"])
    assert text.startswith(f"Trace {flow.ids['bad']}: POST /jobs\n  failed, ")
    runs = [line for line in text.splitlines() if "run process conveyor.traced.RunJob" in line]
    assert [("attempt 1" in r and " error " in r, "attempt 2" in r and " dead " in r) for r in runs] == [
        (True, False),
        (False, True),
    ]
    assert text.count("! RuntimeError: job <b>broken</b> broke") == 2
    assert "~ retry_scheduled" in text and "~ dead_lettered" in text
    assert "| " in text and "INFO    Running job" in text  # the step's log lines, under their span
    whole = json.loads(run(flow, "trace", flow.ids["bad"], "--json"))
    assert whole["traceId"] == flow.ids["bad"] and whole["status"] == "failed"
    assert len(whole["spanList"]) == whole["spans"]


def test_an_unknown_trace_says_where_to_look(flow):
    with pytest.raises(ConveyorError, match=r"no trace 'nope' in the trace store \(see `python -m actors traces`\)"):
        run(flow, "trace", "nope")


def test_help_and_a_mistyped_command_answer_without_booting(tmp_path):
    # No config.toml where it points and no RabbitMQ: only the arguments are read before the runtime boots.
    env = {**os.environ, "CONVEYOR_CONFIG": str(tmp_path / "missing.toml")}
    command = [sys.executable, "-m", "actors"]
    shown = subprocess.run([*command, "--help"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert "{stats,dlq,state,traces,trace}" in shown.stdout
    wrong = subprocess.run([*command, "trace"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert wrong.returncode == 2 and "trace_id" in wrong.stderr and "missing.toml" not in wrong.stderr
    booted = subprocess.run([*command, "stats"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert booted.returncode == 1 and "missing.toml does not exist" in booted.stderr
