"""Worker throughput: a backlog of no-op messages through Conveyor's workers, beside plain Dramatiq.

    python -m bench.worker_throughput [--messages 20000] [--rounds 1] [--profile DIR]

In each round, with no worker running, N messages are enqueued to the ``BenchNoop`` step
(``bench/flows/noop.py``) and N to a plain ``@dramatiq.actor`` (``bench/plain_actors.py``,
a RabbitmqBroker with the same settings and no Conveyor middleware). Then, one kind at a
time, ``dramatiq MODULE -p 2 -t 8`` starts and drains its backlog. Each handler appends a
byte to a counter file; the rate is the messages completed between the first completion
seen and the last, over that time (start-up excluded; it is reported apart). Rounds
alternate which kind drains first.

Prints one JSON line (rates, ratio conveyor/plain, CPU per message), then a summary.
"""

from __future__ import annotations

import argparse
import importlib
import os
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import conveyor

from .completions import count
from .environment import BROKER_URL_ENV, COUNTER_ENV, MAX_PRIORITY_ENV
from .flows.noop import TOPIC
from .harness import MAX_PRIORITY, BenchError, Harness, emit, machine, note, queue_depth, tree_cpu
from .profiling import PySpy, summarize

TARGET_RATIO = 0.9


@dataclass(frozen=True)
class Kind:
    """One side of the comparison: the module ``dramatiq`` loads and the queue it drains."""

    name: str
    module: str
    queue: str


CONVEYOR = Kind("conveyor", "actors", "conveyor.bench.BenchNoop")  # <[project] name>.<flow>.<Step>
PLAIN = Kind("plain", "bench.plain_actors", "bench-plain")


@dataclass
class Drain:
    """How one backlog drained."""

    msg_per_s: float
    measured_messages: int
    measured_s: float
    startup_s: float
    wall_s: float
    cpu_us_per_msg: float | None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.worker_throughput",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--messages", type=int, default=20_000, help="messages per kind and round (default 20000)")
    parser.add_argument("--rounds", type=int, default=1, help="rounds, alternating which kind goes first")
    parser.add_argument("--processes", type=int, default=2, help="dramatiq -p (default 2)")
    parser.add_argument("--threads", type=int, default=8, help="dramatiq -t (default 8)")
    parser.add_argument("--publishers", type=int, default=8, help="threads enqueueing the backlog (default 8)")
    parser.add_argument("--profile", type=Path, help="sample the workers with py-spy; stacks go to this directory")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, counters)")
    args = parser.parse_args(argv)
    if args.messages < 1 or args.rounds < 1:
        parser.error("--messages and --rounds must be at least 1")

    runs: dict[str, list[Drain]] = {CONVEYOR.name: [], PLAIN.name: []}
    enqueue_rates: dict[str, list[float]] = {CONVEYOR.name: [], PLAIN.name: []}
    profiles: dict[str, Any] = {}
    try:
        with Harness("workers", keep=args.keep) as bench:
            bench.write_config(flows=["bench.flows"], log_level="INFO")
            bench.env.update(_plain_env(bench))
            publish = _publishers(bench)
            for round_number in range(args.rounds):
                for kind in (CONVEYOR, PLAIN):
                    note(f"round {round_number + 1}: enqueueing {args.messages} messages for {kind.name}")
                    rate = _enqueue(publish[kind.name], args.messages, args.publishers)
                    enqueue_rates[kind.name].append(rate)
                order = (CONVEYOR, PLAIN) if round_number % 2 == 0 else (PLAIN, CONVEYOR)
                for kind in order:
                    profile_to = None
                    if args.profile and round_number == 0:
                        args.profile.mkdir(parents=True, exist_ok=True)
                        profile_to = args.profile / f"{kind.name}.txt"
                    drain = _drain(bench, kind, args, round_number, profile_to)
                    runs[kind.name].append(drain)
                    note(f"round {round_number + 1}: {kind.name} drained at {drain.msg_per_s:.0f} msg/s")
                    if profile_to is not None:
                        profiles[kind.name] = summarize(profile_to)
    except BenchError as exc:
        print(f"worker_throughput: {exc}", file=sys.stderr)
        return 1

    figures = _figures(args, runs, enqueue_rates, profiles, bench.busy_before)
    emit(figures, _summary(figures))
    return 0


#: Publishes message number ``n`` and returns once RabbitMQ confirmed it.
Publish = Callable[[int], object]


def _publishers(bench: Harness) -> dict[str, Publish]:
    """Enqueue functions for both kinds, from this process (Conveyor booted with the bench's config)."""
    runtime = conveyor.boot(bench.config_path)
    os.environ.update(_plain_env(bench))  # plain_actors reads its broker settings when imported
    plain = importlib.import_module("bench.plain_actors")

    return {
        CONVEYOR.name: lambda n: runtime.publisher.publish(TOPIC, {"n": n}),
        PLAIN.name: lambda n: plain.plain_noop.send({"n": n}),
    }


def _plain_env(bench: Harness) -> dict[str, str]:
    return {BROKER_URL_ENV: bench.broker_url, MAX_PRIORITY_ENV: str(MAX_PRIORITY)}


def _enqueue(publish: Publish, messages: int, threads: int) -> float:
    """Publish ``messages`` (each confirmed by RabbitMQ) from ``threads`` threads; returns messages/s."""
    started = time.monotonic()
    with ThreadPoolExecutor(threads, thread_name_prefix="bench-enqueue") as pool:
        for _ in pool.map(publish, range(messages)):
            pass
    return messages / (time.monotonic() - started)


def _drain(bench: Harness, kind: Kind, args: argparse.Namespace, round_number: int, profile: Path | None) -> Drain:
    depth = queue_depth(bench.broker_url, kind.queue)
    if depth != args.messages:
        raise BenchError(f"{kind.queue} holds {depth} messages before the workers start, expected {args.messages}")
    counter = bench.base / f"{kind.name}-{round_number}.count"
    name = f"{kind.name}-workers-{round_number}"
    timeout = max(120.0, args.messages / 50)
    spawned = time.monotonic()
    master = bench.start_workers(
        name,
        kind.module,
        processes=args.processes,
        threads=args.threads,
        env={COUNTER_ENV: str(counter)},
        wait=False,
    )
    first_at: float | None = None
    first_count = 0
    ready_cpu: tuple[float, int] | None = None
    sampler: PySpy | None = None
    deadline = spawned + timeout
    try:
        while (done := count(counter)) < args.messages:
            now = time.monotonic()
            if first_at is None and done:
                first_at, first_count = now, done
            if ready_cpu is None and bench.log(name).count("is ready for action") >= args.processes:
                ready_cpu = (tree_cpu(master.pid), count(counter))
                if profile is not None:
                    sampler = PySpy(master.pid, profile)
            if now > deadline:
                raise BenchError(f"{kind.name}: {done} of {args.messages} messages done after {timeout:.0f}s")
            bench.check_alive(name)
            time.sleep(0.01)
        finished = time.monotonic()
        end_cpu = tree_cpu(master.pid)
    finally:
        if sampler is not None:
            sampler.stop()
    leftover = queue_depth(bench.broker_url, kind.queue)
    bench.stop(name)
    if leftover:
        raise BenchError(f"{kind.queue} still holds {leftover} messages after {args.messages} completions")
    if first_at is None:  # drained between two polls
        first_at, first_count = spawned, 0
    measured = args.messages - first_count
    cpu_per_msg = None
    if ready_cpu is not None and args.messages > ready_cpu[1]:
        cpu_per_msg = (end_cpu - ready_cpu[0]) / (args.messages - ready_cpu[1]) * 1e6
    return Drain(
        msg_per_s=measured / (finished - first_at) if finished > first_at else float("nan"),
        measured_messages=measured,
        measured_s=finished - first_at,
        startup_s=first_at - spawned,
        wall_s=finished - spawned,
        cpu_us_per_msg=cpu_per_msg,
    )


def _figures(
    args: argparse.Namespace,
    runs: dict[str, list[Drain]],
    enqueue_rates: dict[str, list[float]],
    profiles: dict[str, Any],
    busy_before: float,
) -> dict[str, Any]:
    def side(name: str) -> dict[str, Any]:
        drains = runs[name]
        cpu = [d.cpu_us_per_msg for d in drains if d.cpu_us_per_msg is not None]
        return {
            "msg_per_s": round(statistics.median(d.msg_per_s for d in drains), 1),
            "cpu_us_per_msg": round(statistics.median(cpu), 1) if cpu else None,
            "startup_s": round(statistics.median(d.startup_s for d in drains), 2),
            "enqueue_msg_per_s": round(statistics.median(enqueue_rates[name]), 1),
            "rounds": [{k: round(v, 3) if isinstance(v, float) else v for k, v in asdict(d).items()} for d in drains],
        }

    conveyor, plain = side(CONVEYOR.name), side(PLAIN.name)
    figures: dict[str, Any] = {
        "bench": "worker_throughput",
        "messages": args.messages,
        "rounds": args.rounds,
        "workers": f"-p {args.processes} -t {args.threads}",
        "conveyor": conveyor,
        "plain": plain,
        "ratio": round(conveyor["msg_per_s"] / plain["msg_per_s"], 3),
        # Less noisy than the rates on a busy machine: plain's CPU per message over Conveyor's.
        "cpu_ratio": _ratio(plain["cpu_us_per_msg"], conveyor["cpu_us_per_msg"]),
        "target_ratio": TARGET_RATIO,
        "profiled": bool(args.profile),
        "machine": machine(busy_before),
    }
    if profiles:
        figures["profile"] = profiles
    return figures


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    return round(numerator / denominator, 3) if numerator and denominator else None


def _summary(figures: dict[str, Any]) -> str:
    conveyor, plain, ratio = figures["conveyor"], figures["plain"], figures["ratio"]
    verdict = "meets" if ratio >= TARGET_RATIO else "is below"
    lines = [
        f"Worker throughput, {figures['messages']} no-op messages per kind, dramatiq {figures['workers']}, "
        f"{figures['rounds']} round(s) (median):",
        f"  conveyor  {conveyor['msg_per_s']:>9.0f} msg/s   {conveyor['cpu_us_per_msg'] or 0:>6.0f} us CPU/msg   "
        f"start-up {conveyor['startup_s']:.1f}s   enqueue {conveyor['enqueue_msg_per_s']:.0f} msg/s",
        f"  plain     {plain['msg_per_s']:>9.0f} msg/s   {plain['cpu_us_per_msg'] or 0:>6.0f} us CPU/msg   "
        f"start-up {plain['startup_s']:.1f}s   enqueue {plain['enqueue_msg_per_s']:.0f} msg/s",
        f"  ratio conveyor/plain {ratio:.2f} ({verdict} the {TARGET_RATIO} target); "
        f"CPU per message plain/conveyor {figures['cpu_ratio'] or float('nan'):.2f}",
    ]
    if figures["profiled"]:
        lines.append("  (profiled with py-spy: rates are lower than an unprofiled run)")
        for name, profile in figures.get("profile", {}).items():
            top = ", ".join(f"{pkg} {pct}%" for pkg, pct in profile["self_by_package_pct"][:6])
            lines.append(f"  {name} self time by package: {top}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
