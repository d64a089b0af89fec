"""Operator tools, built on a booted runtime (never imported by it): queue stats (:mod:`.queue_stats`,
from RabbitMQ's management API, :mod:`.management`), the dead-letter queue (:mod:`.dlq`), what the
command line prints (:mod:`.text`) and the command line itself (:mod:`.cli`, ``python -m actors``)."""
