"""Fault hooks for Conveyor's own tests: a process stops or dies at a chosen point. Test-only.

Each hook does nothing unless its environment variable is ``1``, and reads it on each call
(never at import), so a test sets it for the one process it starts:

- ``CONVEYOR_FAULT_STOP_IN_CLAIM=1``: a scheduler sends itself ``SIGSTOP`` once, inside its
  claim of a cron tick (after the claim's insert, before its commit); the test sends
  ``SIGCONT``.
- ``CONVEYOR_FAULT_EXIT_AFTER_COMMIT=1``: a process ends (``os._exit(1)``) right after it
  commits a transaction that recorded state triggers or staged messages, before publishing
  them, so another process's sweep must.

Never set them in production.
"""

from __future__ import annotations

import os
import signal
import threading

_stopped_once = threading.Event()


def _on(name: str) -> bool:
    return os.environ.get(name) == "1"


def stop_in_claim() -> None:
    """Freeze this process once, if ``CONVEYOR_FAULT_STOP_IN_CLAIM=1``."""
    if _on("CONVEYOR_FAULT_STOP_IN_CLAIM") and not _stopped_once.is_set():
        _stopped_once.set()
        # To this thread: a signal sent to the process is handled by its main thread, a few
        # milliseconds later, while this thread would go on (and commit).
        signal.pthread_kill(threading.get_ident(), signal.SIGSTOP)


def exit_after_commit() -> None:
    """End this process at once, if ``CONVEYOR_FAULT_EXIT_AFTER_COMMIT=1``."""
    if _on("CONVEYOR_FAULT_EXIT_AFTER_COMMIT"):
        os._exit(1)
