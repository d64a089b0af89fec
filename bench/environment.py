"""Environment variables the benchmarks hand to the worker processes they start."""

from __future__ import annotations

#: File the benchmark handlers append one byte to per finished message (bench/completions.py).
COUNTER_ENV = "CONVEYOR_BENCH_COUNTER"
#: AMQP URL of the plain Dramatiq broker (bench/plain_actors.py).
BROKER_URL_ENV = "CONVEYOR_BENCH_BROKER_URL"
#: ``max_priority`` of the plain Dramatiq broker.
MAX_PRIORITY_ENV = "CONVEYOR_BENCH_MAX_PRIORITY"
