"""Conveyor's order flow on a 3-node RabbitMQ cluster with quorum queues against one node with classic queues.

    python -m bench.cluster [--orders 1500] [--concurrency 16] [--rounds 3] [--confirms 1000] [--keep]

Two setups that differ only in the broker, in one run on one machine, taking turns going first:

- ``single-classic``: the bench's one RabbitMQ node, classic queues (Conveyor's default);
- ``cluster-quorum``: a ``--size`` node cluster (devtools' LocalCluster, on loopback),
  ``[broker] queue_type = "quorum"``, every process given the list of the nodes' URLs.

Both run ``flows.orders`` (``dramatiq actors -p 2 -t 8``, one ``python -m gateway``) with the state on one
throwaway PostgreSQL server. Per setup and round: ``--confirms`` confirmed publishes, one at a time, to a
durable queue of the setup's type (through its leader, and on the cluster through another node too),
then bench.orders' trial (its phase 1): orders/s from the first POST to the last notification, POST
latency, CPU per order by process (RabbitMQ: the setup's Erlang VMs summed), the stock checked after.

Prints one JSON line (each setup's medians, ranges and rounds, and the ratios cluster/single), then a summary.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import pika
import pika.exceptions

from devtools.cluster import LocalCluster
from devtools.localnode import LocalNode
from devtools.processes import living

from .errors import BenchError
from .harness import Harness, argument_parser, emit, note, percentile, rabbitmq_pid, wait_for
from .order_load import ORDER
from .order_state import Postgres, bench_postgres
from .order_trial import System, Trial
from .procfs import cpu_seconds, machine

#: Conveyor on PostgreSQL in both setups, so that only the broker differs.
SYSTEM = System("conveyor", "postgres")
#: Publishes sent before the timed ones (the connection's and the queue's first work).
CONFIRM_WARMUP = 50
#: What each confirmed publish carries: about the size of an order message.
CONFIRM_BODY = repr(ORDER).encode() * 2
#: Phase 1's figures reported per setup, besides CPU per order.
PHASE1_KEYS = ("orders_per_s", "post_p50_ms", "post_p99_ms")


@dataclass(frozen=True)
class Setup:
    """One side of the comparison: the nodes its processes use, and their queue type."""

    name: str
    nodes: list[LocalNode]
    queue_type: str


class ClusterTrial(Trial):
    """bench.orders' trial, counting the CPU of every node of the setup as ``rabbitmq``."""

    def _phase1(self) -> dict[str, Any]:
        before = _cpu(self.bench.rabbitmq_pids())
        figures = super()._phase1()
        after = _cpu(self.bench.rabbitmq_pids())
        used = sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())
        figures["cpu_ms_per_order"]["rabbitmq"] = round(used / max(1, figures["orders"]) * 1000, 3)
        figures["rabbitmq_nodes"] = len(after)
        return figures


def main(argv: list[str] | None = None) -> int:
    parser = argument_parser("bench.cluster", __doc__)
    parser.add_argument("--orders", type=int, default=1500, help="orders to POST per trial (default 1500)")
    parser.add_argument("--concurrency", type=int, default=16, help="keep-alive connections POSTing (default 16)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, the setups taking turns going first (default 3)")
    parser.add_argument("--warmup", type=int, default=100, help="orders POSTed and drained first, untimed")
    parser.add_argument("--confirms", type=int, default=1000, help="timed confirmed publishes per setup and round")
    parser.add_argument("--size", type=int, default=3, help="nodes in the cluster (default 3)")
    parser.add_argument("--processes", type=int, default=2, help="dramatiq -p (default 2)")
    parser.add_argument("--threads", type=int, default=8, help="dramatiq -t (default 8)")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.add_argument("--timeout", type=float, default=600, help="give up on a trial after this many seconds")
    parser.set_defaults(post_seconds=0)  # the trial's phase 2 (wrk) is not part of this comparison
    args = parser.parse_args(argv)
    if min(args.orders, args.concurrency, args.rounds, args.confirms) < 1 or args.warmup < 0 or args.size < 2:
        parser.error("--orders, --concurrency, --rounds and --confirms must be at least 1, --size at least 2")

    started = time.monotonic()
    runs: dict[str, list[dict[str, Any]]] = {"single-classic": [], "cluster-quorum": []}
    try:
        with ExitStack() as stack:
            bench = stack.enter_context(Harness("cluster", keep=args.keep))
            postgres = stack.enter_context(bench_postgres(bench, None))
            cluster = stack.enter_context(_cluster(bench, args.size))
            setups = [
                Setup("single-classic", bench.broker_nodes, "classic"),
                Setup("cluster-quorum", cluster.nodes, "quorum"),
            ]
            for number in range(1, args.rounds + 1):
                order = setups if number % 2 else setups[::-1]
                for position, setup in enumerate(order):
                    note(f"round {number}: {setup.name}")
                    result = _trial(bench, setup, args, number, postgres)
                    runs[setup.name].append(result | {"position": position})
    except BenchError as exc:
        print(f"cluster: {exc}", file=sys.stderr)
        return 1

    figures = _figures(args, runs, time.monotonic() - started, bench.busy_before)
    emit(figures, _summary(figures))
    return 1 if any("error" in run for side in runs.values() for run in side) else 0


@contextmanager
def _cluster(bench: Harness, size: int) -> Iterator[LocalCluster]:
    """A cluster of ``size`` nodes under the bench's temp dir; every one of its VMs is gone afterwards."""
    cluster = LocalCluster(bench.base / "cluster", size=size, name="benchcl")
    note(f"starting a {size}-node RabbitMQ cluster under {cluster.base}")
    started = time.monotonic()
    try:
        try:
            cluster.start()
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            raise BenchError(f"the cluster did not start: {exc} (its nodes' logs are under {cluster.base})") from None
        note(f"{size} nodes joined in {time.monotonic() - started:.1f}s")
        yield cluster
    finally:
        pids = {pid for node in cluster.nodes if (pid := rabbitmq_pid(node)) is not None}
        note("stopping the cluster")
        cluster.stop()
        try:  # a VM closes its ports a moment before it exits
            wait_for(lambda: not living(pids), timeout=30, what="the cluster's Erlang VMs to exit", interval=0.2)
        except BenchError:
            for pid in living(pids):
                note(f"RabbitMQ process {pid} outlived its node's stop: killing it")
                os.kill(pid, signal.SIGKILL)


def _trial(bench: Harness, setup: Setup, args: argparse.Namespace, number: int, postgres: Postgres) -> dict[str, Any]:
    quorum = setup.queue_type == "quorum"
    bench.use_broker(setup.nodes if quorum else None, **({"queue_type": "quorum"} if quorum else {}))
    try:
        confirms = confirm_latency(setup.nodes, setup.queue_type, args.confirms)
    except BenchError as exc:
        note(f"{setup.name}: confirmed publishes failed: {exc}")
        return {"round": number, "error": str(exc)}
    result = ClusterTrial(bench, SYSTEM, args, number, postgres, name=setup.name).run()
    # What RabbitMQ says the trial's queues are: the proof that the setup is the one named.
    types = [row[1] for row in _queues(setup.nodes[0], "name", "type") if row[0] in SYSTEM.queues]
    return result | {"confirms": confirms, "queue_types": {kind: types.count(kind) for kind in sorted(set(types))}}


def _queues(node: LocalNode, *columns: str) -> list[list[str]]:
    """``rabbitmqctl list_queues COLUMNS...`` on ``node``, one list of values per queue ([] if it fails)."""
    listing = node.ctl("list_queues", "-q", "--no-table-headers", *columns, timeout=60)
    if listing.returncode != 0:
        note(f"rabbitmqctl list_queues on {node.nodename} failed: {listing.stderr.strip()[:300]}")
        return []
    return [line.split("\t") for line in listing.stdout.splitlines() if line.strip()]


def confirm_latency(nodes: list[LocalNode], queue_type: str, count: int) -> dict[str, Any]:
    """p50/p99 in ms of ``count`` confirmed publishes, one at a time, to a durable ``queue_type`` queue.

    The queue is declared through ``nodes[0]`` (its leader, for a quorum queue); with more nodes the
    publishes are timed through ``nodes[1]`` as well (``via_other_node``). The queue is deleted after.
    """
    queue = f"bench.confirms.{queue_type}"
    arguments = {"x-queue-type": queue_type}
    figures: dict[str, Any] = {}
    for label, node in zip(("via_leader", "via_other_node"), nodes[:2], strict=False):
        latencies = _publish(node.url, queue, arguments, count)
        figures[label] = {"p50_ms": _ms(percentile(latencies, 0.5)), "p99_ms": _ms(percentile(latencies, 0.99))}
    leader = next((row[1] for row in _queues(nodes[0], "name", "leader") if row[0] == queue), "")
    figures["leader"] = leader or None  # classic queues have none
    try:
        with _channel(nodes[0].url) as channel:
            channel.queue_delete(queue)
    except pika.exceptions.AMQPError as exc:
        note(f"could not delete queue {queue}: {exc!r}")
    return figures


def _publish(url: str, queue: str, arguments: dict[str, Any], count: int) -> list[float]:
    properties = pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent, content_type="application/json")
    latencies: list[float] = []
    try:
        with _channel(url) as channel:
            channel.queue_declare(queue, durable=True, arguments=arguments)
            for sent in range(CONFIRM_WARMUP + count):
                begun = time.perf_counter()
                channel.basic_publish("", queue, CONFIRM_BODY, properties, mandatory=True)
                if sent >= CONFIRM_WARMUP:
                    latencies.append(time.perf_counter() - begun)
            channel.queue_purge(queue)
    except pika.exceptions.AMQPError as exc:
        raise BenchError(f"publishing to {queue} through {url}: {exc!r}") from None
    return latencies


@contextmanager
def _channel(url: str) -> Iterator[Any]:
    """A channel in confirm mode: ``basic_publish`` returns once the broker confirmed (or raises)."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        yield channel
    finally:
        if connection.is_open:
            connection.close()


# -- figures --------------------------------------------------------------------------------------


def _figures(
    args: argparse.Namespace, runs: dict[str, list[dict[str, Any]]], elapsed: float, busy: float
) -> dict[str, Any]:
    sides = {name: _side(side) for name, side in runs.items()}
    single, cluster = sides["single-classic"], sides["cluster-quorum"]
    keys = ["orders_per_s", "post_p50_ms", "post_p99_ms", "cpu_ms_per_order_total", "cpu_ms_per_order_rabbitmq"]
    keys += ["confirm_p50_ms", "confirm_p99_ms"]
    ratios = {key: _ratio(cluster[key]["median"], single[key]["median"]) for key in keys if key in cluster}
    return {
        "bench": "cluster",
        "orders": args.orders,
        "concurrency": args.concurrency,
        "rounds": args.rounds,
        "confirms": args.confirms,
        "cluster_size": args.size,
        "workers": f"-p {args.processes} -t {args.threads}",
        "log_level": args.log_level,
        "flows": args.flows,
        "state": "postgresql (throwaway server, fsync off)",
        "setups": sides,
        "ratios_cluster_over_single": ratios,
        "elapsed_s": round(elapsed, 1),
        "load_1m": round(os.getloadavg()[0], 2),
        "machine": machine(busy),
    }


def _side(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians and ranges over a setup's rounds that finished, and every round."""
    done = [run for run in runs if "error" not in run]
    one = [run["phase1"] for run in done]
    values: dict[str, list[float]] = {key: [phase[key] for phase in one] for key in PHASE1_KEYS}
    values["cpu_ms_per_order_total"] = [round(sum(phase["cpu_ms_per_order"].values()), 3) for phase in one]
    for part in dict.fromkeys(name for phase in one for name in phase["cpu_ms_per_order"]):
        values[f"cpu_ms_per_order_{part}"] = [phase["cpu_ms_per_order"].get(part, 0.0) for phase in one]
    for way, prefix in (("via_leader", "confirm"), ("via_other_node", "confirm_other_node")):
        for key in ("p50_ms", "p99_ms"):
            if found := [run["confirms"][way][key] for run in done if way in run["confirms"]]:
                values[f"{prefix}_{key}"] = found
    side: dict[str, Any] = {key: _spread(found) for key, found in values.items()}
    side["rounds_ok"] = len(done)
    side["lost_decrements"] = [run["lost_decrements"] for run in done]
    side["failed_orders"] = sum(run["failed_orders"] for run in done)
    side["post_errors"] = sum(phase["post_errors"] for phase in one)
    side["queue_types"] = sorted({kind for run in done for kind in run["queue_types"]})
    side["rounds"] = runs
    return side


def _spread(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"median": None, "min": None, "max": None}
    return {"median": round(statistics.median(values), 3), "min": min(values), "max": max(values)}


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    return round(numerator / denominator, 3) if numerator and denominator else None


def _summary(figures: dict[str, Any]) -> str:
    lines = [
        f"Order flow, {figures['orders']} orders ({figures['concurrency']} connections), dramatiq "
        f"{figures['workers']}, state on PostgreSQL; {figures['confirms']} confirmed publishes; "
        f"{figures['rounds']} round(s), median [min-max], {figures['elapsed_s']:.0f}s in all:"
    ]
    for name, side in figures["setups"].items():
        if not side["rounds_ok"]:
            errors = [run["error"] for run in side["rounds"] if "error" in run]
            lines.append(f"  {name:<15} FAILED: {errors[0] if errors else 'no round finished'}")
            continue
        spreads = {key: _fmt(value) for key, value in side.items() if isinstance(value, dict) and "median" in value}
        cpu = ", ".join(f"{key[17:]} {value}" for key, value in spreads.items() if key.startswith("cpu_ms_per_order_"))
        confirms = ", ".join(f"{key[8:]} {value}" for key, value in spreads.items() if key.startswith("confirm_"))
        lines += [
            f"  {name:<15} {spreads['orders_per_s']} orders/s; POST p50 {spreads['post_p50_ms']} ms, "
            f"p99 {spreads['post_p99_ms']} ms; {'/'.join(side['queue_types'])} queues; "
            f"lost decrements {side['lost_decrements']}, failed orders {side['failed_orders']}, "
            f"failed POSTs {side['post_errors']}",
            f"  {'':<15} CPU ms per order: {cpu}",
            f"  {'':<15} confirmed publish: {confirms}",
        ]
    ratios = ", ".join(f"{key} {value}" for key, value in figures["ratios_cluster_over_single"].items())
    lines.append(f"  cluster/single (medians): {ratios}")
    return "\n".join(lines)


def _fmt(spread: dict[str, float | None]) -> str:
    if spread["median"] is None:
        return "n/a"
    return f"{spread['median']:.2f} [{spread['min']:.2f}-{spread['max']:.2f}]"


def _cpu(pids: list[int]) -> dict[int, float]:
    found: dict[int, float] = {}
    for pid in pids:
        try:
            found[pid] = cpu_seconds(pid)
        except OSError:
            continue  # a node's VM gone meanwhile
    return found


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


if __name__ == "__main__":
    sys.exit(main())
