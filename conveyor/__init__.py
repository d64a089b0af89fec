"""Conveyor: steps triggered by HTTP, queues, state and cron, run as Dramatiq actors on RabbitMQ.

Declare a step in a module of a flow package (``flows/`` in this project)::

    from conveyor import Context, queue, step

    @step(name="SendNotification", triggers=[queue("send-notification", input=Notification)])
    def handler(notification: Notification, ctx: Context) -> None:
        ctx.logger.info("Sending notification", orderId=notification.orderId)

Importing Conveyor, or a flow module, only declares: nothing connects, opens a file or reads
config.toml until a front door calls :func:`boot`. Test steps and flows with :mod:`conveyor.testing`.
"""

from __future__ import annotations

from .clock import now_iso
from .context import AsyncContext, Context, Enqueued
from .declare.registry import Registry
from .declare.requests import Request
from .declare.state_changes import StateChange
from .declare.steps import Step, step
from .declare.triggers import cron, http, queue, state
from .errors import (
    ConfigError,
    ConveyorError,
    FlowImportError,
    InvalidInput,
    PublishError,
    StateConflictError,
    StateKeyError,
    StateOpError,
    StateUnavailableError,
    StateValueError,
    StepDeclarationError,
    UndeclaredTopicError,
)
from .runtime import Runtime, boot, current
from .store import AsyncStateStore, SqliteStateStore, StateStore, open_store

__all__ = [
    "AsyncContext",
    "AsyncStateStore",
    "ConfigError",
    "Context",
    "ConveyorError",
    "Enqueued",
    "FlowImportError",
    "InvalidInput",
    "PublishError",
    "Registry",
    "Request",
    "Runtime",
    "StateChange",
    "SqliteStateStore",
    "StateConflictError",
    "StateKeyError",
    "StateOpError",
    "StateStore",
    "StateUnavailableError",
    "StateValueError",
    "Step",
    "StepDeclarationError",
    "UndeclaredTopicError",
    "boot",
    "cron",
    "current",
    "http",
    "now_iso",
    "open_store",
    "queue",
    "state",
    "step",
]
