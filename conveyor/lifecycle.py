"""Tie a process's life to its parent's: Linux's ``PR_SET_PDEATHSIG``, in one place.

A child that outlives the process that started it keeps running unsupervised: a ``dramatiq``
worker process whose master was killed goes on consuming, a uvicorn worker keeps its socket.
:func:`exit_with_parent` asks the kernel to send the child a signal (``SIGTERM``: the graceful
stop) the moment its parent dies, however it dies, ``SIGKILL`` included.

Linux only; elsewhere the functions do nothing and say so in a debug log.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable

logger = logging.getLogger("conveyor.lifecycle")

#: From ``<linux/prctl.h>``.
PR_SET_PDEATHSIG = 1


def _load_prctl() -> Callable[[int, int, int, int, int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    return prctl


# Looked up once, at import: a ``preexec_fn`` (between fork and exec) should only call it.
_prctl = _load_prctl()


def parent_death_signal_available() -> bool:
    """Can this platform signal a process when its parent dies (Linux's ``prctl``)?"""
    return _prctl is not None


def exit_with_parent(parent_pid: int, sig: int = signal.SIGTERM) -> bool:
    """Have the kernel send this process ``sig`` when its parent, ``parent_pid``, dies.

    Returns ``False`` if ``parent_pid`` is no longer this process's parent: it died before the
    request took effect, so ``sig`` will never come and the caller must stop by itself. Where
    ``prctl`` is unavailable it does nothing (a debug log) and returns ``True``.

    Where ``prctl`` is available it neither logs nor takes locks, so it is safe in a
    :class:`subprocess.Popen` ``preexec_fn``. Linux sends ``sig`` when the parent *thread* that
    started this process ends: start children from a thread that lives as long as the parent.
    """
    if _prctl is None:
        logger.debug(
            "prctl(PR_SET_PDEATHSIG) is not available on %s; process %d will outlive its parent",
            sys.platform,
            os.getpid(),
        )
        return True
    if _prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    # A parent that died before the prctl left us to init (or a subreaper): no signal then.
    return os.getppid() == parent_pid


def exit_with_multiprocessing_parent(sig: int = signal.SIGTERM) -> None:
    """In a process :mod:`multiprocessing` started (a ``dramatiq`` or uvicorn worker), get ``sig``
    when the parent dies, or now if it has died already. Elsewhere, do nothing.

    ``sig`` goes through the process's own handler, so the process stops the way it always does.
    """
    parent = multiprocessing.parent_process()
    if parent is None or parent.pid is None:
        return
    if not exit_with_parent(parent.pid, sig):
        logger.warning("Parent process %d is gone; stopping process %d", parent.pid, os.getpid())
        os.kill(os.getpid(), sig)
