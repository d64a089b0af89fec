"""Make a ``dramatiq`` worker process stop on every ordinary signal pattern, and when its master dies."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

import dramatiq
from dramatiq.middleware import Middleware

from ..lifecycle import exit_with_multiprocessing_parent
from ..logs import class_logger

#: The exit code of a worker process stopped at once (Dramatiq's ``RET_KILLED``).
KILLED = 1

#: The signals Dramatiq's worker processes stop on (they ignore SIGINT: the master forwards it as SIGTERM).
STOP_SIGNALS = [signal.SIGTERM, *([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])]

#: A Python signal handler.
Handler = Callable[[int, FrameType | None], Any]


class StopOnSignals(Middleware):
    """Stop a worker process on a signal however it is sent: once, twice, to the group, by systemd.

    A signal sent to the whole process group (``kill -TERM -PGID``, systemd's default stop)
    reaches each worker process twice: directly, and forwarded by the ``dramatiq`` master.
    Dramatiq takes the second as "kill": it raises ``SystemExit`` in the main thread without
    stopping the worker, and the AsyncIO middleware's event-loop thread then keeps the
    process alive, consuming, until something sends it ``SIGKILL``. With this middleware:

    - the first signal is Dramatiq's graceful stop: the worker finishes the messages it runs
      (for up to ``--worker-shutdown-timeout``), gives back the ones it holds, and exits;
    - another signal within ``duplicate_window`` seconds of it is the same request, and is ignored;
    - a signal after that means "stop now": the process exits at once, and RabbitMQ delivers
      the messages it had not acknowledged again (delivery is at least once: nothing is lost).

    It also has the kernel send the worker process ``SIGTERM`` when its master dies (Linux), so
    a killed master leaves no worker processes behind.

    Its hook runs only in the worker processes of ``dramatiq``'s command line, after Dramatiq
    installed its signal handlers; on any other broker (the gateway's, a test's) it does nothing.

    Parameters:
      duplicate_window: seconds after the first stop signal during which another one counts as
        a duplicate of it (default 0.5; the master forwards a signal within milliseconds).
    """

    def __init__(self, *, duplicate_window: float = 0.5) -> None:
        self.logger = class_logger(__name__, type(self))
        self.duplicate_window = duplicate_window
        self.first_signal_at: float | None = None

    def after_process_boot(self, broker: dramatiq.Broker) -> None:
        for sig in STOP_SIGNALS:
            dramatiqs = signal.getsignal(sig)
            if callable(dramatiqs):
                signal.signal(sig, self._wrap(dramatiqs))
        # After the handlers: a master that is already gone gets us SIGTERM through them.
        exit_with_multiprocessing_parent(signal.SIGTERM)

    def _wrap(self, graceful: Handler) -> Handler:
        def handle(signum: int, frame: FrameType | None) -> None:
            now = time.monotonic()
            if self.first_signal_at is None:
                self.first_signal_at = now
                graceful(signum, frame)
            elif now - self.first_signal_at < self.duplicate_window:
                self.logger.debug("Ignoring signal %d: a duplicate of the one that is stopping the worker.", signum)
            else:
                self.logger.warning(
                    "Signal %d again: stopping now. RabbitMQ delivers the unacknowledged messages again.", signum
                )
                sys.stderr.flush()
                os._exit(KILLED)

        return handle
