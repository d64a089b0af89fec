"""Tracing's cost: worker msg/s and gateway requests/s with tracing on against tracing off, in one run.

    python -m bench.tracing [--rounds 3] [--messages 10000] [--seconds 10] [--orders 1000]

Each round measures both modes, alternating which goes first (round 1 on then off, round 2 off
then on, ...), each process started with ``CONVEYOR_TRACING=1`` or ``0`` (and, off, ``[metrics] enabled = false``
too, since the metrics are made from the same spans: "off" is no observability at all):

- worker: ``--messages`` no-op messages enqueued to ``BenchNoop`` (``bench/flows/noop.py``),
  then ``dramatiq actors -p 2 -t 8`` drains them (bench.worker_throughput's drain: rate from
  the first completion to the last, start-up left out, CPU per message);
- gateway: ``python -m gateway`` with the order flow, ``POST /orders`` (CreateOrder, which
  enqueues to ProcessOrder) under wrk for ``--seconds``, after a warm-up; no workers run and
  the ProcessOrder queue is purged after each run, as in bench.gateway.

Then, unless ``--orders 0``, the order flow end to end with tracing on (workers and gateway):
``--orders`` POSTs until every notification is stored, and the trace store's size per 1,000
orders once the processes stopped. Every "on" run writes to a traces file of its own.

Prints one JSON line per round, then one JSON line with the medians and ranges and the ratios
on/off, then a summary. The issue's target: on/off at least 0.9 for both rates.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sqlite3
import statistics
import sys
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import conveyor
from conveyor import StateStore, open_store

from .flows.noop import TOPIC
from .gateway import PROCESS_ORDER_QUEUE, find_wrk, run_wrk
from .harness import (
    BenchError,
    Harness,
    argument_parser,
    cpu_seconds,
    emit,
    machine,
    note,
    purge,
    queue_depth,
    tree_cpu,
)
from .order_load import post_orders
from .worker_throughput import CONVEYOR, Drain, Kind, Publish, _drain, _enqueue

TARGET_RATIO = 0.9
TRACING_ENV = "CONVEYOR_TRACING"
MODES = ("on", "off")


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    wrk = find_wrk() if "gateway" in args.parts else None
    if "gateway" in args.parts and wrk is None:
        print(
            "tracing: wrk is not installed. Install it with `apt-get install wrk` (Debian), then run again.",
            file=sys.stderr,
        )
        return 2
    rounds: list[dict[str, Any]] = []
    size: dict[str, Any] | None = None
    started = time.monotonic()
    try:
        with Harness("tracing", keep=args.keep) as bench:
            publish = _backlog_publisher(bench) if "worker" in args.parts else None
            for number in range(args.rounds):
                order = MODES if number % 2 == 0 else MODES[::-1]
                figures: dict[str, Any] = {"bench": "tracing", "round": number + 1, "order": list(order)}
                for mode in order:
                    if publish is not None:
                        figures.setdefault("worker", {})[mode] = _worker_run(bench, args, publish, mode, number)
                    if wrk is not None:
                        figures.setdefault("gateway", {})[mode] = _gateway_run(bench, args, wrk, mode, number)
                print(json.dumps(figures), flush=True)
                rounds.append(figures)
            if args.orders:
                size = _store_size(bench, args)
    except BenchError as exc:
        print(f"tracing: {exc}", file=sys.stderr)
        return 1
    summary = _figures(args, rounds, size, time.monotonic() - started, bench.busy_before)
    emit(summary, _summary(summary))
    return 0


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argument_parser("bench.tracing", __doc__)
    parser.add_argument("--rounds", type=int, default=3, help="rounds, alternating which mode goes first (default 3)")
    parser.add_argument("--messages", type=int, default=10_000, help="no-op messages per worker run (default 10000)")
    parser.add_argument("--seconds", type=int, default=10, help="seconds of wrk per gateway run (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of wrk before each gateway run (default 2)")
    parser.add_argument("--connections", type=int, default=16, help="wrk -c (default 16)")
    parser.add_argument("--wrk-threads", type=int, default=2, help="wrk -t (default 2)")
    parser.add_argument(
        "--orders", type=int, default=1000, help="orders for the trace store's size, tracing on; 0 skips (default 1000)"
    )
    parser.add_argument("--parts", default="worker,gateway", help="comma-separated: worker, gateway (default both)")
    parser.add_argument("--processes", type=int, default=2, help="dramatiq -p (default 2)")
    parser.add_argument("--threads", type=int, default=8, help="dramatiq -t (default 8)")
    parser.add_argument("--publishers", type=int, default=8, help="threads enqueueing the backlog (default 8)")
    parser.add_argument("--timeout", type=float, default=600, help="give up on the orders phase after this many s")
    args = parser.parse_args(argv)
    args.parts = {part.strip() for part in args.parts.split(",") if part.strip()}
    if not args.parts or args.parts - {"worker", "gateway"}:
        parser.error("--parts takes worker, gateway or both, comma-separated")
    if args.rounds < 1 or args.messages < 1 or args.orders < 0:
        parser.error("--rounds and --messages must be at least 1, --orders at least 0")
    if not 1 <= args.seconds <= 600 or not 0 <= args.warmup <= 60:
        parser.error("--seconds must be 1..600 and --warmup 0..60")
    return args


def _traces_file(bench: Harness, label: str) -> Path:
    return bench.base / f"traces-{label}.db"


def _configure(bench: Harness, flows: list[str], label: str, mode: str) -> Path:
    """Write the config the next processes read: their flows, tracing on or off, a traces file of their own."""
    traces = _traces_file(bench, label)
    enabled = "true" if mode == "on" else "false"
    # "Off" is the whole of it off: Prometheus metrics are made from the same spans.
    metrics = bench.base / f"metrics-{label}"
    extra = f'[tracing]\nenabled = {enabled}\npath = "{traces}"\n[metrics]\nenabled = {enabled}\npath = "{metrics}"\n'
    bench.write_config(flows=flows, extra=extra)
    # The environment's override wins over the file: set it too, so a CONVEYOR_TRACING in the shell cannot.
    bench.env[TRACING_ENV] = "1" if mode == "on" else "0"
    return traces


# -- worker -------------------------------------------------------------------------------------


def _backlog_publisher(bench: Harness) -> Publish:
    """Publish the backlogs from this process with tracing off, so that both modes drain the same messages."""
    _configure(bench, ["bench.flows"], "publisher", "off")
    os.environ.pop(TRACING_ENV, None)  # boot() would let it override the config's "off"
    runtime = conveyor.boot(bench.config_path)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # boot() logs at INFO: not a line per POST, please
    return lambda n: runtime.publisher.publish(TOPIC, {"n": n})


def _worker_run(bench: Harness, args: argparse.Namespace, publish: Publish, mode: str, number: int) -> dict[str, Any]:
    traces = _configure(bench, ["bench.flows"], f"worker-{mode}-{number}", mode)
    note(f"round {number + 1}: worker, tracing {mode}: enqueueing {args.messages} messages")
    _enqueue(publish, args.messages, args.publishers)
    drain: Drain = _drain(bench, Kind(f"tracing-{mode}", "actors", CONVEYOR.queue), args, number, None)
    note(f"round {number + 1}: worker, tracing {mode}: {drain.msg_per_s:.0f} msg/s")
    return {
        "msg_per_s": round(drain.msg_per_s, 1),
        "cpu_us_per_msg": round(drain.cpu_us_per_msg, 1) if drain.cpu_us_per_msg is not None else None,
        "startup_s": round(drain.startup_s, 2),
        "traces_bytes": _store_bytes(traces),
    }


# -- gateway ------------------------------------------------------------------------------------


def _gateway_run(bench: Harness, args: argparse.Namespace, wrk: str, mode: str, number: int) -> dict[str, Any]:
    traces = _configure(bench, args.flows, f"gateway-{mode}-{number}", mode)
    name = f"gateway-{mode}-{number}"
    url = bench.start_gateway(name)
    try:
        if args.warmup:
            run_wrk(wrk, url, args.warmup, args.connections, args.wrk_threads)
        note(f"round {number + 1}: gateway, tracing {mode}: {args.seconds}s of POST /orders")
        pid = bench.processes.running[name].pid
        before = cpu_seconds(pid) + tree_cpu(pid)
        result = run_wrk(wrk, url, args.seconds, args.connections, args.wrk_threads)
        spent = cpu_seconds(pid) + tree_cpu(pid) - before
    finally:
        bench.stop(name)
        if queue_depth(bench.broker_url, PROCESS_ORDER_QUEUE):
            purge(bench.broker_url, [PROCESS_ORDER_QUEUE])
    note(f"round {number + 1}: gateway, tracing {mode}: {result['requests_per_s']:.0f} requests/s")
    requests = result["requests"]
    return {
        "requests_per_s": result["requests_per_s"],
        "p50_ms": result["p50_ms"],
        "p99_ms": result["p99_ms"],
        "requests": requests,
        "errors": result["non_2xx"] + result["socket_errors"],
        "cpu_us_per_request": round(spent / requests * 1e6, 1) if requests else None,
        "traces_bytes": _store_bytes(traces),
    }


# -- the trace store's size ---------------------------------------------------------------------


def _store_size(bench: Harness, args: argparse.Namespace) -> dict[str, Any]:
    """The order flow end to end with tracing on; the traces file's size once every process stopped."""
    traces = _configure(bench, args.flows, "orders", "on")
    state = open_store(bench.state_path)
    before = len(state.list("notifications"))
    bench.start_workers("workers", "actors", processes=args.processes, threads=args.threads)
    url = bench.start_gateway("gateway-orders")
    note(f"orders: posting {args.orders} orders with tracing on")
    deadline = time.monotonic() + args.timeout
    posted = asyncio.run(post_orders(url, 16, deadline=deadline, orders=args.orders))
    stored = _wait_notifications(bench, state, before + posted.ok, deadline) - before
    # Stopped first: each process flushes the spans it still holds, and SQLite checkpoints its WAL.
    bench.stop("gateway-orders")
    bench.stop("workers")
    size = _store_bytes(traces)
    return {
        "orders": posted.ok,
        "notifications": stored,
        "traces_file": str(traces),
        "traces_bytes": size,
        "bytes_per_1000_orders": round(size / posted.ok * 1000) if size is not None and posted.ok else None,
        "rows": _row_counts(traces),
    }


def _wait_notifications(bench: Harness, state: StateStore, expected: int, deadline: float) -> int:
    stored = 0
    while stored < expected:
        bench.check_alive("workers")
        if time.monotonic() > deadline:
            raise BenchError(f"{stored} of {expected} notifications stored before --timeout")
        time.sleep(0.2)
        stored = len(state.list("notifications"))
    return stored


def _store_bytes(traces: Path) -> int | None:
    """The traces file's size once its WAL is folded in; None while no tracer wrote it (tracing off, or not built).

    Call it once the processes writing it stopped: they leave their WAL (as large as it ever grew) behind, and
    the checkpoint here moves its pages into the file and truncates it, so the figure is the data's, not the WAL's.
    """
    if not traces.exists():
        return None
    with closing(sqlite3.connect(traces)) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return sum(path.stat().st_size for path in (traces, traces.with_name(traces.name + "-wal")) if path.exists())


def _row_counts(traces: Path) -> dict[str, int] | None:
    """Rows per table of the traces file, whatever its schema."""
    if not traces.exists():
        return None
    with closing(sqlite3.connect(f"file:{traces}?mode=ro", uri=True)) as db:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {table: db.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0] for table in tables}


# -- figures ------------------------------------------------------------------------------------


def _figures(
    args: argparse.Namespace, rounds: list[dict[str, Any]], size: dict[str, Any] | None, elapsed: float, busy: float
) -> dict[str, Any]:
    figures: dict[str, Any] = {
        "bench": "tracing",
        "rounds": args.rounds,
        "messages": args.messages,
        "seconds": args.seconds,
        "connections": args.connections,
        "workers": f"-p {args.processes} -t {args.threads}",
        "flows": args.flows,
        "target_ratio": TARGET_RATIO,
    }
    parts = (("worker", "msg_per_s", "cpu_us_per_msg"), ("gateway", "requests_per_s", "cpu_us_per_request"))
    for part, rate, cpu in parts:
        if part not in rounds[0]:
            continue
        modes = {mode: _spread([r[part][mode][rate] for r in rounds]) for mode in MODES}
        cpus = {mode: _spread([c for r in rounds if (c := r[part][mode][cpu]) is not None]) for mode in MODES}
        # Each round's on/off: both modes ran back to back, so these pair up the same machine noise.
        paired = _spread([r[part]["on"][rate] / r[part]["off"][rate] for r in rounds if r[part]["off"][rate]])
        figures[part] = {
            rate: modes,
            cpu: cpus,
            "ratio_on_off": _ratio(modes["on"]["median"], modes["off"]["median"]),
            "ratio_on_off_by_round": paired,
            "cpu_ratio_off_on": _ratio(cpus["off"]["median"], cpus["on"]["median"]),
        }
    figures["store"] = size
    figures["elapsed_s"] = round(elapsed, 1)
    figures["machine"] = machine(busy)
    return figures


def _spread(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"median": None, "min": None, "max": None}
    return {"median": round(statistics.median(values), 3), "min": round(min(values), 3), "max": round(max(values), 3)}


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    return round(numerator / denominator, 3) if numerator and denominator else None


def _summary(figures: dict[str, Any]) -> str:
    lines = [f"Tracing on against off, {figures['rounds']} round(s), medians [min-max]:"]
    for part, rate, unit in (("worker", "msg_per_s", "msg/s"), ("gateway", "requests_per_s", "req/s")):
        if part not in figures:
            continue
        result = figures[part]
        for mode in MODES:
            spread = result[rate][mode]
            lines.append(
                f"  {part:<8} tracing {mode:<3} {spread['median']:>9.1f} {unit}  "
                f"[{spread['min']:.1f}-{spread['max']:.1f}]"
            )
        ratio, paired = result["ratio_on_off"], result["ratio_on_off_by_round"]
        verdict = "meets" if ratio is not None and ratio >= TARGET_RATIO else "misses"
        lines.append(
            f"  {part:<8} on/off {ratio} ({verdict} the {TARGET_RATIO} target); by round {paired['median']} "
            f"[{paired['min']}-{paired['max']}]; CPU off/on {result['cpu_ratio_off_on']}"
        )
    store = figures["store"]
    if store is not None:
        if store["bytes_per_1000_orders"] is None:
            lines.append(f"  trace store: {store['traces_file']} was not written (is the tracer in place?)")
        else:
            lines.append(
                f"  trace store: {store['bytes_per_1000_orders'] / 1e6:.2f} MB per 1,000 orders "
                f"({store['orders']} orders, {store['traces_bytes'] / 1e6:.2f} MB; rows {store['rows']})"
            )
    lines.append(f"  ({figures['elapsed_s']:.0f}s in all)")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
