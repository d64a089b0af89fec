"""BenchNoop: a queue step that does nothing but count itself done (bench/worker_throughput.py).

No input schema, no state, no enqueue, no logging: what it costs is Conveyor's own work per
message (middleware, context, trace id) on top of Dramatiq's.
"""

from __future__ import annotations

from typing import Any

from conveyor import Context, queue, step

from ..completions import mark_done

#: The topic the benchmark publishes to.
TOPIC = "bench.noop"


@step(name="BenchNoop", description="Does nothing (benchmark)", flows=["bench"], triggers=[queue(TOPIC)])
def handler(data: Any, ctx: Context) -> None:
    mark_done()
