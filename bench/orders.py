"""Conveyor's order flow beside the thinnest code a user would write instead, on one RabbitMQ node.

    python -m bench.orders [--orders 3000] [--concurrency 16] [--post-seconds 15] [--rounds 1]
                           [--systems conveyor,glue] [--backends sqlite,postgres] [--state-url URL]

Two systems run the seed's order-processing flow, CreateOrder (POST /orders) -> ProcessOrder ->
UpdateInventory + SendNotification, one after the other on the bench's RabbitMQ node, each with
``dramatiq MODULE -p 2 -t 8`` and one uvicorn process serving POST /orders:

- ``conveyor``: ``dramatiq actors`` and ``python -m gateway`` with ``flows.orders``;
- ``glue``: ``bench/glue/``, the seed's steps as plain Dramatiq actors and a small Starlette app
  on a SQLite key-value table (UpdateInventory reads the stock, then writes stock - quantity).

Each system starts on a fresh state db at the same path (``--backends postgres`` runs Conveyor
on PostgreSQL too, a fresh database per run). For each: the products' stock is set and
``--warmup`` orders are POSTed and drained, untimed; then

1. ``--orders`` POSTs from ``--concurrency`` keep-alive connections while the workers run; the
   clock stops when every accepted order has its notification stored (orders/s end to end,
   POST requests/s and p50/p99, CPU per order by process);
2. ``--post-seconds`` of POSTs from wrk on as many connections, workers running (requests/s,
   p50/p99): wrk's CPU is a fraction of the httpx client's, so the systems get the cores;
3. once everything drained (every notification stored, the system's queues empty), the stock of
   each product against the stock the orders should have left: ``lost_decrements``.

With ``--rounds N`` the systems take turns going first and the figures are medians. Conveyor's
event-loop lag (``GET /_admin/loop``) is read after each phase where the gateway has it.

Prints one JSON line (each system's figures and rounds, the ratios conveyor/glue), then a summary.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from contextlib import ExitStack
from typing import Any

from .environment import BROKER_URL_ENV, MAX_PRIORITY_ENV
from .harness import (
    MAX_PRIORITY,
    BenchError,
    Harness,
    argument_parser,
    emit,
    machine,
    note,
)
from .order_state import bench_postgres
from .order_trial import BACKENDS, SYSTEMS, System, Trial


def main(argv: list[str] | None = None) -> int:
    parser = argument_parser("bench.orders", __doc__)
    parser.add_argument("--orders", type=int, default=3000, help="orders to POST in phase 1 (default 3000)")
    parser.add_argument("--concurrency", type=int, default=16, help="keep-alive connections POSTing (default 16)")
    parser.add_argument(
        "--post-seconds", type=float, default=15, help="seconds of POSTs in phase 2, 0 to skip it (default 15)"
    )
    parser.add_argument(
        "--warmup", type=int, default=100, help="orders POSTed and drained before phase 1, untimed (default 100)"
    )
    parser.add_argument("--rounds", type=int, default=1, help="rounds, the systems taking turns going first")
    parser.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated: conveyor, glue (default both)")
    parser.add_argument(
        "--backends", help="Conveyor's state backends, comma-separated: sqlite, postgres (default sqlite)"
    )
    parser.add_argument(
        "--state-url",
        help="a PostgreSQL server for Conveyor (postgresql://...; the user may create databases) instead of a "
        "throwaway one; implies --backends postgres unless given",
    )
    parser.add_argument("--processes", type=int, default=2, help="dramatiq -p (default 2)")
    parser.add_argument("--threads", type=int, default=8, help="dramatiq -t (default 8)")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.add_argument("--timeout", type=float, default=600, help="give up on a system after this many seconds")
    args = parser.parse_args(argv)
    if args.orders < 1 or args.concurrency < 1 or args.rounds < 1 or args.post_seconds < 0 or args.warmup < 0:
        parser.error("--orders, --concurrency and --rounds must be at least 1, --post-seconds and --warmup at least 0")
    if args.backends is None:
        args.backends = "postgres" if args.state_url else "sqlite"
    try:
        systems = _systems(args.systems, args.backends)
    except ValueError as exc:
        parser.error(str(exc))

    started = time.monotonic()
    runs: dict[str, list[dict[str, Any]]] = {system.name: [] for system in systems}
    try:
        with ExitStack() as stack:
            bench = stack.enter_context(Harness("orders", keep=args.keep))
            bench.env.update({BROKER_URL_ENV: bench.broker_url, MAX_PRIORITY_ENV: str(MAX_PRIORITY)})
            postgres = None
            if any(system.backend == "postgres" for system in systems):
                postgres = stack.enter_context(bench_postgres(bench, args.state_url))
            for round_number in range(args.rounds):
                shift = round_number % len(systems)
                for position, system in enumerate(systems[shift:] + systems[:shift]):
                    note(f"round {round_number + 1}: {system.name}")
                    trial = Trial(bench, system, args, round_number + 1, postgres)
                    result = trial.run()
                    result["position"] = position
                    runs[system.name].append(result)
    except BenchError as exc:
        print(f"orders: {exc}", file=sys.stderr)
        return 1

    figures = _figures(args, systems, runs, time.monotonic() - started, bench.busy_before)
    emit(figures, _summary(figures))
    failed = any("error" in run for side in runs.values() for run in side)
    return 1 if failed else 0


def _systems(systems: str, backends: str) -> list[System]:
    kinds = [name.strip() for name in systems.split(",") if name.strip()]
    stores = [name.strip() for name in backends.split(",") if name.strip()]
    for name in kinds:
        if name not in SYSTEMS:
            raise ValueError(f"--systems: unknown system {name!r} (choose from {', '.join(SYSTEMS)})")
    for name in stores:
        if name not in BACKENDS:
            raise ValueError(f"--backends: unknown backend {name!r} (choose from {', '.join(BACKENDS)})")
    if not kinds or not stores:
        raise ValueError("--systems and --backends need at least one name each")
    found: list[System] = []
    for kind in dict.fromkeys(kinds):
        found += [System(kind, backend) for backend in dict.fromkeys(stores)] if kind == "conveyor" else [System(kind)]
    return found


def _median(values: list[float | int | None]) -> float | None:
    present = [value for value in values if value is not None]
    return round(statistics.median(present), 3) if present else None


def _side(system: System, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """A system's medians over its rounds that finished, and every round."""
    done = [run for run in runs if "error" not in run]
    one = [run["phase1"] for run in done]
    two = [run["phase2"] for run in done if run.get("phase2")]
    processes = list(dict.fromkeys(name for phase in one for name in phase["cpu_ms_per_order"]))
    cpu = {name: _median([phase["cpu_ms_per_order"].get(name) for phase in one]) for name in processes}
    lags = [phase.get("loop_lag_ms") for phase in one + two]
    return {
        "backend": system.backend,
        "rounds_ok": len(done),
        "orders_per_s": _median([phase["orders_per_s"] for phase in one]),
        "post_requests_per_s": _median([phase["post_requests_per_s"] for phase in one]),
        "post_p50_ms": _median([phase["post_p50_ms"] for phase in one]),
        "post_p99_ms": _median([phase["post_p99_ms"] for phase in one]),
        "drain_after_posts_s": _median([phase["drain_after_posts_s"] for phase in one]),
        "phase2_requests_per_s": _median([phase["requests_per_s"] for phase in two]),
        "phase2_p99_ms": _median([phase["p99_ms"] for phase in two]),
        "phase2_gateway_cpu_us_per_request": _median([phase["gateway_cpu_us_per_request"] for phase in two]),
        "cpu_ms_per_order": cpu,
        "cpu_ms_per_order_total": _median([sum(phase["cpu_ms_per_order"].values()) for phase in one]),
        "lost_decrements": _median([run["lost_decrements"] for run in done]),
        "lost_decrements_max": max((run["lost_decrements"] for run in done), default=None),
        "decrements": _median([run["decrements"] for run in done]),
        "failed_orders": sum(run["failed_orders"] for run in done),
        "post_errors": sum(phase["post_errors"] for phase in one + two),
        "loop_lag_max_ms": max((lag["max"] for lag in lags if lag and "max" in lag), default=None),
        # The part of the lag the gateway's own code caused (the rest: waiting for one of the cores).
        "loop_blocked_max_ms": max((lag["blocked_max"] for lag in lags if lag and "blocked_max" in lag), default=None),
        "rounds": runs,
    }


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    return round(numerator / denominator, 3) if numerator and denominator else None


def _figures(
    args: argparse.Namespace, systems: list[System], runs: dict[str, list[dict[str, Any]]], elapsed: float, busy: float
) -> dict[str, Any]:
    sides = {system.name: _side(system, runs[system.name]) for system in systems}
    ratios: dict[str, Any] = {}
    glue = sides.get("glue")
    for name, side in sides.items():
        if glue is None or not name.startswith("conveyor"):
            continue
        ratios[f"{name}/glue"] = {
            "orders_per_s": _ratio(side["orders_per_s"], glue["orders_per_s"]),
            "post_requests_per_s": _ratio(side["post_requests_per_s"], glue["post_requests_per_s"]),
            "phase2_requests_per_s": _ratio(side["phase2_requests_per_s"], glue["phase2_requests_per_s"]),
            # Steadier than the rates on a busy machine: glue's CPU per order over Conveyor's.
            "cpu_per_order_glue_over_conveyor": _ratio(glue["cpu_ms_per_order_total"], side["cpu_ms_per_order_total"]),
            "lost_decrements": {name: side["lost_decrements"], "glue": glue["lost_decrements"]},
        }
    finished = [run for side in runs.values() for run in side if "phase1" in run]
    fields = {tuple(run["phase1"]["response_fields"] or ()) for run in finished}
    return {
        "bench": "orders",
        "orders": args.orders,
        "concurrency": args.concurrency,
        "post_seconds": args.post_seconds,
        "rounds": args.rounds,
        "workers": f"-p {args.processes} -t {args.threads}",
        "log_level": args.log_level,
        "flows": args.flows,
        "systems": sides,
        "ratios": ratios,
        "same_response_fields": len(fields) <= 1,
        "elapsed_s": round(elapsed, 1),
        "load_1m": round(os.getloadavg()[0], 2),
        "machine": machine(busy),
    }


def _fmt(value: float | None, spec: str = ".1f") -> str:
    return "n/a" if value is None else format(value, spec)


def _summary(figures: dict[str, Any]) -> str:
    phase2 = f" + {figures['post_seconds']:g}s of POSTs" if figures["post_seconds"] else ""
    lines = [
        f"Orders, {figures['orders']} via POST /orders ({figures['concurrency']} connections){phase2}, "
        f"dramatiq {figures['workers']}, logging {figures['log_level']}, {figures['rounds']} round(s) (median), "
        f"{figures['elapsed_s']:.0f}s in all:"
    ]
    for name, side in figures["systems"].items():
        lines += _system_lines(name, side)
    for name, ratio in figures["ratios"].items():
        lines.append(
            f"  {name}: orders/s {_fmt(ratio['orders_per_s'], '.2f')}, "
            f"POST req/s {_fmt(ratio['post_requests_per_s'], '.2f')}, "
            f"phase-2 req/s {_fmt(ratio['phase2_requests_per_s'], '.2f')}; "
            f"CPU per order glue/conveyor {_fmt(ratio['cpu_per_order_glue_over_conveyor'], '.2f')}"
        )
    if not figures["same_response_fields"]:
        lines.append("  (the systems answered POST /orders with different fields: see response_fields)")
    return "\n".join(lines)


def _system_lines(name: str, side: dict[str, Any]) -> list[str]:
    errors = [run["error"] for run in side["rounds"] if "error" in run]
    if not side["rounds_ok"]:
        return [f"  {name:<18} FAILED: {errors[0] if errors else 'no round finished'}"]
    rates = (
        f"{_fmt(side['orders_per_s']):>7} orders/s end to end; POST {_fmt(side['post_requests_per_s'])} req/s, "
        f"p50 {_fmt(side['post_p50_ms'])} ms, p99 {_fmt(side['post_p99_ms'])} ms"
    )
    if side["phase2_requests_per_s"] is not None:
        rates += f"; then {_fmt(side['phase2_requests_per_s'])} req/s, p99 {_fmt(side['phase2_p99_ms'])} ms"
    cpu = ", ".join(f"{part} {_fmt(ms, '.2f')}" for part, ms in side["cpu_ms_per_order"].items())
    cpu += f" (total {_fmt(side['cpu_ms_per_order_total'], '.2f')})"
    state = f"lost decrements {_fmt(side['lost_decrements'], 'g')} of {_fmt(side['decrements'], 'g')}"
    if side["loop_lag_max_ms"] is not None:
        state += f", event-loop lag max {side['loop_lag_max_ms']} ms (blocked {side['loop_blocked_max_ms']} ms)"
    if side["post_errors"]:
        state += f", {side['post_errors']} failed POSTs"
    if errors:
        state += f", {len(errors)} round(s) failed: {errors[0]}"
    return [f"  {name:<18} {rates}", f"  {'':<18} CPU ms per order: {cpu}", f"  {'':<18} {state}"]


if __name__ == "__main__":
    sys.exit(main())
