"""Memory of idle processes: a Conveyor worker process and the gateway, beside plain Dramatiq and Starlette.

    python -m bench.memory [--settle 3]

Starts the bench's own RabbitMQ node, then in turn ``dramatiq actors -p 1 -t 8`` (Dramatiq's
default thread count) and ``python -m gateway``, both with the order-processing flow
(``--flows flows`` loads every flow of the project instead), and for reference ``dramatiq
bench.plain_actors -p 1`` and ``python -m bench.echo_app``. Once each is ready (workers: "ready
for action"; HTTP: answering) and has sat idle ``--settle`` seconds, reads ``VmRSS`` from
/proc/PID/status (for a worker, of the worker process, the child of the dramatiq master) and
``Pss`` from /proc/PID/smaps_rollup (shared pages split among the processes sharing them).

Prints one JSON line (MB = MiB), then a summary.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from .environment import BROKER_URL_ENV, MAX_PRIORITY_ENV
from .harness import (
    HOST,
    MAX_PRIORITY,
    BenchError,
    Harness,
    argument_parser,
    children,
    emit,
    free_port,
    machine,
    note,
    pss_mb,
    rss_mb,
)


def main(argv: list[str] | None = None) -> int:
    parser = argument_parser("bench.memory", __doc__)
    parser.add_argument("--settle", type=float, default=3, help="idle seconds before reading (default 3)")
    args = parser.parse_args(argv)

    figures: dict[str, Any] = {"bench": "memory", "settle_s": args.settle, "flows": args.flows}
    try:
        with Harness("memory", keep=args.keep) as bench:
            bench.write_config(flows=args.flows)
            plain_env = {BROKER_URL_ENV: bench.broker_url, MAX_PRIORITY_ENV: str(MAX_PRIORITY)}

            for name, module, env in (("worker", "actors", None), ("plain_worker", "bench.plain_actors", plain_env)):
                master = bench.start_workers(name, module, processes=1, threads=8, env=env)
                time.sleep(args.settle)
                (child,) = children(master.pid) or (None,)
                if child is None:
                    raise BenchError(f"{name}: the dramatiq master has no worker process")
                figures[name] = _memory(child)
                figures[name]["master_rss_mb"] = round(rss_mb(master.pid), 1)
                note(f"{name}: {figures[name]['rss_mb']} MB")
                bench.stop(name)

            bench.start_gateway("gateway")
            time.sleep(args.settle)
            figures["gateway"] = _memory(bench.processes.running["gateway"].pid)
            note(f"gateway: {figures['gateway']['rss_mb']} MB")
            bench.stop("gateway")

            port = free_port()
            bench.start("echo", "-m", "bench.echo_app", "--host", HOST, "--port", str(port))
            bench.wait_http("echo", f"http://{HOST}:{port}/orders", method="POST")
            time.sleep(args.settle)
            figures["echo_app"] = _memory(bench.processes.running["echo"].pid)
            bench.stop("echo")
    except BenchError as exc:
        print(f"memory: {exc}", file=sys.stderr)
        return 1

    figures["machine"] = machine(bench.busy_before)
    worker, gateway = figures["worker"], figures["gateway"]
    plain, echo = figures["plain_worker"], figures["echo_app"]
    summary = "\n".join(
        [
            f"Idle memory after start-up (+{args.settle:g}s), VmRSS (PSS):",
            f"  conveyor worker process (dramatiq actors -p 1)  {worker['rss_mb']:>6.1f} MB ({worker['pss_mb']} MB)   "
            f"plain dramatiq worker {plain['rss_mb']:.1f} MB",
            f"  conveyor gateway (python -m gateway)           {gateway['rss_mb']:>6.1f} MB ({gateway['pss_mb']} MB)   "
            f"bare starlette/uvicorn {echo['rss_mb']:.1f} MB",
        ]
    )
    emit(figures, summary)
    return 0


def _memory(pid: int) -> dict[str, Any]:
    pss = pss_mb(pid)
    return {"rss_mb": round(rss_mb(pid), 1), "pss_mb": round(pss, 1) if pss is not None else None}


if __name__ == "__main__":
    sys.exit(main())
