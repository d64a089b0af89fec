"""Retry failed messages with exponential or fixed backoff, as each step's settings say."""

from __future__ import annotations

from typing import Any

import dramatiq
from dramatiq.broker import MessageProxy
from dramatiq.middleware import Middleware

from ...errors import InvalidInput
from ...logs import class_logger, error_text
from ...settings import BUILTIN, StepSettings
from .options import option

#: The settings this middleware reads, each an actor option (and a field of StepSettings).
SETTINGS = ("max_retries", "backoff", "retry_delay", "max_retry_delay")


class Retries(Middleware):
    """Re-enqueue a message whose handler raised, after a backoff delay, until retries run out.

    Replaces Dramatiq's own ``Retries`` so that operators choose the backoff in config.toml.
    A message that failed its input schema (:class:`~conveyor.errors.InvalidInput`), or raised
    one of the step's ``throws`` exceptions, is never retried: it would fail again.

    Reads ``max_retries`` (retries after the first attempt; 3 means at most 4 runs), ``backoff``
    (``"exponential"``: ``retry_delay * 2**n`` capped at ``max_retry_delay``; or ``"fixed"``),
    ``retry_delay`` and ``max_retry_delay`` (milliseconds), and ``throws``.

    Parameters:
      defaults: the settings used where neither the message nor its actor has one (the
        built-in :class:`~conveyor.settings.StepSettings` unless given).
    """

    actor_options = {*SETTINGS, "throws"}

    def __init__(self, *, defaults: StepSettings = BUILTIN) -> None:
        self.logger = class_logger(__name__, type(self))
        self.defaults = {name: getattr(defaults, name) for name in SETTINGS}

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        if exception is None:
            return
        throws = option(broker, message, "throws") or ()
        if isinstance(exception, (InvalidInput, *throws)):
            message.fail()  # the same input would fail the same way: straight to the dead letters
            return

        setting = {name: option(broker, message, name, default) for name, default in self.defaults.items()}
        retries = message.options.get("retries", 0)
        if retries >= setting["max_retries"]:
            # DeadLetters says it, in the one line about a dead message (where it went included).
            self.logger.debug("%s[%s] failed on its last attempt.", message.actor_name, message.message_id)
            message.fail()
            return

        delay = backoff_delay(retries, setting["backoff"], setting["retry_delay"], setting["max_retry_delay"])
        message.options["retries"] = retries + 1
        # One line per failed attempt, without the traceback: the attempt's span keeps it.
        self.logger.warning(
            "%s[%s] failed on attempt %d of %d: %s; retrying in %d ms",
            message.actor_name,
            message.message_id,
            retries + 1,
            setting["max_retries"] + 1,
            error_text(exception),
            delay,
        )
        broker.enqueue(message.copy(), delay=delay)


def backoff_delay(retries: int, backoff: str, retry_delay: int, max_retry_delay: int) -> int:
    """Milliseconds to wait before retry number ``retries + 1``.

    >>> [backoff_delay(n, "exponential", 1000, 5000) for n in range(4)]
    [1000, 2000, 4000, 5000]
    >>> backoff_delay(3, "fixed", 1000, 5000)
    1000
    """
    if backoff == "fixed":
        return retry_delay
    return int(min(retry_delay * 2 ** min(retries, 32), max_retry_delay))
