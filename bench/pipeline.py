"""The order-processing flow end to end: POST /orders through the gateway until every notification is stored.

    python -m bench.pipeline [--orders 3000] [--concurrency 16]

Starts the bench's own RabbitMQ node, ``dramatiq actors -p 2 -t 8`` and ``python -m gateway``
(``[project] flows = ["flows.orders"]``, logging at INFO as in the shipped config.toml), then
POSTs the orders from ``--concurrency`` concurrent httpx clients. Each order runs CreateOrder
(gateway) -> ProcessOrder -> UpdateInventory + SendNotification; the clock stops when the state
db holds one notification per order.

Prints one JSON line (orders/s end to end, the POST phase's requests/s and latencies), then a summary.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

from conveyor import StateStore, open_store

from .harness import BenchError, Harness, argument_parser, cpu_seconds, emit, machine, note, percentile, tree_cpu
from .order_load import post_orders


def main(argv: list[str] | None = None) -> int:
    parser = argument_parser("bench.pipeline", __doc__)
    parser.add_argument("--orders", type=int, default=3000, help="orders to POST (default 3000)")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight (default 16)")
    parser.add_argument("--processes", type=int, default=2, help="dramatiq -p (default 2)")
    parser.add_argument("--threads", type=int, default=8, help="dramatiq -t (default 8)")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.add_argument("--timeout", type=float, default=600, help="give up after this many seconds (default 600)")
    args = parser.parse_args(argv)
    if args.orders < 1 or args.concurrency < 1:
        parser.error("--orders and --concurrency must be at least 1")

    try:
        with Harness("pipeline", keep=args.keep) as bench:
            bench.write_config(flows=args.flows, log_level=args.log_level)
            bench.start_workers("workers", "actors", processes=args.processes, threads=args.threads)
            url = bench.start_gateway()
            state = open_store(bench.state_path)
            note(f"posting {args.orders} orders to {url}/orders, {args.concurrency} at a time")
            cpu_before = _cpu(bench)
            started = time.monotonic()
            posted = asyncio.run(
                post_orders(url, args.concurrency, deadline=started + args.timeout, orders=args.orders)
            )
            post_done = time.monotonic()
            note("waiting for every notification")
            stored = _wait_notifications(bench, state, posted.ok, deadline=started + args.timeout)
            finished = time.monotonic()
            cpu_used = {name: seconds - cpu_before[name] for name, seconds in _cpu(bench).items()}
    except BenchError as exc:
        print(f"pipeline: {exc}", file=sys.stderr)
        return 1

    post_s, total_s = post_done - started, finished - started
    figures: dict[str, Any] = {
        "bench": "pipeline",
        "orders": args.orders,
        "concurrency": args.concurrency,
        "workers": f"-p {args.processes} -t {args.threads}",
        "log_level": args.log_level,
        "flows": args.flows,
        "orders_per_s": round(posted.ok / total_s, 1),
        "total_s": round(total_s, 2),
        "post_requests_per_s": round(args.orders / post_s, 1),
        "post_s": round(post_s, 2),
        "post_p50_ms": round(percentile(posted.latencies, 0.50) * 1000, 1),
        "post_p99_ms": round(percentile(posted.latencies, 0.99) * 1000, 1),
        "post_errors": args.orders - posted.ok,
        "drain_after_posts_s": round(finished - post_done, 2),
        "notifications": stored,
        # CPU time per order, from the first POST to the last notification, by process.
        "cpu_ms_per_order": {name: round(seconds / args.orders * 1000, 2) for name, seconds in cpu_used.items()},
        "machine": machine(bench.busy_before),
    }
    errors = f", {figures['post_errors']} failed" if figures["post_errors"] else ""
    summary = "\n".join(
        [
            f"Pipeline, {args.orders} orders via POST /orders ({args.concurrency} concurrent), "
            f"workers {figures['workers']}, logging {args.log_level}:",
            f"  end to end     {figures['orders_per_s']:>8.1f} orders/s  ({total_s:.1f}s until the last notification)",
            f"  POST phase     {figures['post_requests_per_s']:>8.1f} requests/s  (p50 {figures['post_p50_ms']} ms, "
            f"p99 {figures['post_p99_ms']} ms{errors})",
            f"  workers needed {figures['drain_after_posts_s']:.1f}s more after the last POST",
            "  CPU per order: " + ", ".join(f"{name} {ms:.2f} ms" for name, ms in figures["cpu_ms_per_order"].items()),
        ]
    )
    emit(figures, summary)
    return 0 if not figures["post_errors"] else 1


def _cpu(bench: Harness) -> dict[str, float]:
    """CPU seconds used so far by the gateway, the workers, RabbitMQ and this client (the load generator)."""
    node = bench.node_pid()
    workers = bench.processes.running["workers"].pid
    return {
        "gateway": cpu_seconds(bench.processes.running["gateway"].pid),
        # The dramatiq master too: it writes the worker processes' log lines.
        "workers": cpu_seconds(workers) + tree_cpu(workers),
        "rabbitmq": cpu_seconds(node) if node is not None else 0.0,
        "client": time.process_time(),
    }


def _wait_notifications(bench: Harness, state: StateStore, expected: int, *, deadline: float) -> int:
    """Poll the state db until it holds ``expected`` notifications; returns how many it holds."""
    stored = 0
    while stored < expected:
        bench.check_alive("workers")
        if time.monotonic() > deadline:
            raise BenchError(f"{stored} of {expected} notifications stored before --timeout")
        time.sleep(0.2)  # list() parses every notification: poll gently, the workers share the cores
        stored = len(state.list("notifications"))
    return stored


if __name__ == "__main__":
    sys.exit(main())
