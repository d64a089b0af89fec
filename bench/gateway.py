"""Gateway throughput: POST /orders under wrk, beside a bare Starlette echo endpoint (the ceiling).

    python -m bench.gateway [--duration 15] [--connections 16] [--with-workers]

Starts the bench's own RabbitMQ node, ``python -m gateway`` (``[project] flows =
["flows.orders"]``, the order-processing flow) and
``python -m bench.echo_app`` (a Starlette app whose ``POST /orders`` only echoes the JSON,
served by uvicorn with the gateway's settings). For each, after a short warm-up, wrk sends
the README's order (``bench/order.lua``) over ``--connections`` connections for ``--duration``
seconds (``wrk --latency``). By default no worker runs during the Conveyor measurement and the
ProcessOrder queue is purged after it, so the figure is the gateway's own; ``--with-workers``
runs ``dramatiq actors -p 2 -t 8`` meanwhile (the same two cores then do both jobs).

Needs wrk (Debian: ``apt-get install wrk``); run as root, the script installs it if missing.
Prints one JSON line (requests/s, p50/p99 latency for both, the ratio), then a summary.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from .harness import (
    HOST,
    BenchError,
    Harness,
    argument_parser,
    cpu_seconds,
    emit,
    free_port,
    machine,
    note,
    purge,
    queue_depth,
    tree_cpu,
)

LUA_SCRIPT = Path(__file__).with_name("order.lua")
#: The queue CreateOrder's messages land in: ``<[project] name>.<flow>.<Step>``.
PROCESS_ORDER_QUEUE = "conveyor.order-processing.ProcessOrder"

_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def main(argv: list[str] | None = None) -> int:
    parser = argument_parser("bench.gateway", __doc__)
    parser.add_argument("--duration", type=int, default=15, help="seconds per measurement (default 15)")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of load before each measurement (default 3)")
    parser.add_argument("--connections", type=int, default=16, help="wrk -c (default 16)")
    parser.add_argument("--wrk-threads", type=int, default=2, help="wrk -t (default 2)")
    parser.add_argument("--with-workers", action="store_true", help="run dramatiq actors -p 2 -t 8 meanwhile")
    args = parser.parse_args(argv)
    if not 1 <= args.duration <= 600 or not 0 <= args.warmup <= 60:
        parser.error("--duration must be 1..600 and --warmup 0..60 seconds")

    wrk = find_wrk()
    if wrk is None:
        print(
            "gateway: wrk is not installed. Install it with `apt-get install wrk` (Debian), then run again.",
            file=sys.stderr,
        )
        return 2

    results: dict[str, dict[str, Any]] = {}
    try:
        with Harness("gateway", keep=args.keep) as bench:
            bench.write_config(flows=args.flows)
            gateway_url = bench.start_gateway()
            echo_port = free_port()
            bench.start("echo", "-m", "bench.echo_app", "--host", HOST, "--port", str(echo_port))
            echo_url = f"http://{HOST}:{echo_port}"
            bench.wait_http("echo", f"{echo_url}/orders", method="POST")
            if args.with_workers:
                bench.start_workers("workers", "actors", processes=2, threads=8)

            for name, url in (("echo", echo_url), ("conveyor", gateway_url)):
                if args.warmup:
                    note(f"{name}: warming up for {args.warmup}s")
                    run_wrk(wrk, url, args.warmup, args.connections, args.wrk_threads)
                note(f"{name}: {args.duration}s of POST /orders over {args.connections} connections")
                server = bench.processes.running["gateway" if name == "conveyor" else "echo"].pid
                before = _server_cpu(server)
                results[name] = run_wrk(wrk, url, args.duration, args.connections, args.wrk_threads)
                # CPU per request moves far less with the machine's noise than requests per second do.
                spent = _server_cpu(server) - before
                requests = results[name]["requests"]
                results[name]["cpu_us_per_request"] = round(spent / requests * 1e6, 1) if requests else None

            left = queue_depth(bench.broker_url, PROCESS_ORDER_QUEUE)
            purged = purge(bench.broker_url, [PROCESS_ORDER_QUEUE]) if left else 0
    except BenchError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 1

    echo, conveyor = results["echo"], results["conveyor"]
    figures: dict[str, Any] = {
        "bench": "gateway",
        "duration_s": args.duration,
        "connections": args.connections,
        "wrk_threads": args.wrk_threads,
        "with_workers": args.with_workers,
        "flows": args.flows,
        "conveyor": conveyor,
        "echo": echo,
        "ratio": round(conveyor["requests_per_s"] / echo["requests_per_s"], 3) if echo["requests_per_s"] else None,
        "process_order_queue_left": left,
        "purged": purged,
        "machine": machine(bench.busy_before),
    }
    emit(figures, _summary(figures))
    return 0


def _server_cpu(pid: int) -> float:
    """CPU seconds a server process and its children (uvicorn's workers) have used so far."""
    return cpu_seconds(pid) + tree_cpu(pid)


def find_wrk() -> str | None:
    """wrk's path; as root, ``apt-get install -y wrk`` first if it is missing (with an update if needed)."""
    if found := shutil.which("wrk"):
        return found
    if os.geteuid() != 0:
        return None
    note("wrk is missing; installing Debian's package wrk with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-qq", "wrk"]
    for commands in ([install], [["apt-get", "update", "-qq"], install]):
        for command in commands:
            subprocess.run(command, env=env, check=False, timeout=600, stdout=subprocess.DEVNULL)
        if found := shutil.which("wrk"):
            return found
    return None


def run_wrk(wrk: str, url: str, duration: int, connections: int, threads: int) -> dict[str, Any]:
    """Run wrk against ``url``/orders and return its figures."""
    command = [
        wrk,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{duration}s",
        "--latency",
        "--timeout",
        "10s",
        "-s",
        str(LUA_SCRIPT),
        f"{url}/orders",
    ]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=duration + 60, check=False)
    except subprocess.TimeoutExpired:
        raise BenchError(f"wrk did not finish within {duration + 60}s") from None
    if done.returncode != 0:
        raise BenchError(f"wrk failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")
    return parse_wrk(done.stdout)


def parse_wrk(output: str) -> dict[str, Any]:
    """Requests/s, latency percentiles (ms), request and error counts from ``wrk --latency`` output."""
    rate = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.MULTILINE)
    total = re.search(r"^\s*(\d+) requests in ([\d.]+)(\w+)", output, re.MULTILINE)
    if rate is None or total is None:
        raise BenchError(f"could not read wrk's output:\n{output}")
    latency = {
        f"p{percent}_ms": round(float(value) * _UNITS_MS[unit], 3)
        for percent, value, unit in re.findall(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s|m)\s*$", output, re.MULTILINE)
    }
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    return {
        "requests_per_s": float(rate[1]),
        "p50_ms": latency.get("p50_ms"),
        "p99_ms": latency.get("p99_ms"),
        **{key: value for key, value in latency.items() if key not in ("p50_ms", "p99_ms")},
        "requests": int(total[1]),
        "non_2xx": int(non_2xx[1]) if non_2xx else 0,
        "socket_errors": sum(int(n) for n in socket_errors.groups()) if socket_errors else 0,
    }


def _summary(figures: dict[str, Any]) -> str:
    conveyor, echo = figures["conveyor"], figures["echo"]
    workers = "workers running" if figures["with_workers"] else "no workers (queue purged after)"

    def line(name: str, result: dict[str, Any]) -> str:
        errors = result["non_2xx"] + result["socket_errors"]
        problems = f"   {errors} errors" if errors else ""
        cpu = result.get("cpu_us_per_request")
        return (
            f"  {name:<9} {result['requests_per_s']:>9.1f} req/s   p50 {result['p50_ms']:>7.2f} ms   "
            f"p99 {result['p99_ms']:>7.2f} ms   {cpu if cpu is not None else '?':>7} us CPU/request{problems}"
        )

    return "\n".join(
        [
            f"Gateway, POST /orders, {figures['connections']} connections for {figures['duration_s']}s each, "
            f"{workers}:",
            line("conveyor", conveyor),
            line("echo", echo),
            f"  ratio conveyor/echo {figures['ratio']}",
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
