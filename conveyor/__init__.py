"""Conveyor: steps triggered by HTTP, queues and cron, run as Dramatiq actors on RabbitMQ.

Declare a step in a module under ``actors/flows/``::

    from conveyor import Context, queue, step

    @step(name="SendNotification", triggers=[queue("send-notification", input=Notification)])
    def handler(notification: Notification, ctx: Context) -> None:
        ctx.logger.info("Sending notification", orderId=notification.orderId)
"""

from __future__ import annotations

from .clock import now_iso
from .context import Context, Enqueued
from .errors import ConfigError, ConveyorError, InvalidInput, PublishError, UndeclaredTopicError
from .requests import Request
from .runtime import Runtime, boot, current
from .state_changes import StateChange
from .state_store import StateStore
from .steps import Step, step
from .triggers import cron, http, queue, state

__all__ = [
    "ConfigError",
    "Context",
    "ConveyorError",
    "Enqueued",
    "InvalidInput",
    "PublishError",
    "Request",
    "Runtime",
    "StateChange",
    "StateStore",
    "Step",
    "UndeclaredTopicError",
    "boot",
    "cron",
    "current",
    "http",
    "now_iso",
    "queue",
    "state",
    "step",
]
