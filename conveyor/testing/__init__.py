"""Testing steps and flows, in the test's own process: no RabbitMQ, no subprocess, no sleeping.

Two levels, both on the real schemas, state operations and error checks:

- :class:`StepEnvironment` runs one handler with a test context and records what it enqueued,
  the state it wrote and what it logged; ``attempt=`` sets ``ctx.attempt``.
- :class:`FlowEnvironment` runs whole flows on the real runtime and gateway app over an
  in-process broker with Conveyor's middleware (retries, dead letters, conditions,
  priorities, delays, state triggers): an HTTP client, ``publish``, ``fire`` a cron step, and
  ``join`` to drain every queue without waiting out delays.

See docs/testing.md.
"""

from __future__ import annotations

from .broker import InProcessBroker, SentMessage
from .flow import FlowEnvironment
from .records import Enqueue, LogLine
from .step import HttpAnswer, RecordingPublisher, StepEnvironment, StepRun

__all__ = [
    "Enqueue",
    "FlowEnvironment",
    "HttpAnswer",
    "InProcessBroker",
    "LogLine",
    "RecordingPublisher",
    "SentMessage",
    "StepEnvironment",
    "StepRun",
]
