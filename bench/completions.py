"""Count finished messages across worker processes: one byte appended to a file per message.

The benchmark's handlers call :func:`mark_done`; the benchmark reads the file's size. The file
is named by ``CONVEYOR_BENCH_COUNTER``; without it, :func:`mark_done` does nothing. An
``O_APPEND`` write of one byte is atomic across processes and costs one system call, the
same for the Conveyor step and the plain Dramatiq actor, so it does not tilt the comparison.
"""

from __future__ import annotations

import os
from pathlib import Path

from .environment import COUNTER_ENV

_path = os.environ.get(COUNTER_ENV)
# Opened once at import, in each worker process (dramatiq imports the actor module after forking).
_fd = os.open(_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644) if _path else None


def mark_done() -> None:
    """Record one finished message."""
    if _fd is not None:
        os.write(_fd, b".")


def count(path: Path) -> int:
    """How many messages were recorded in ``path`` so far."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0
