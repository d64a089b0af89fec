"""The one error a benchmark raises when it cannot measure what it set out to."""

from __future__ import annotations


class BenchError(RuntimeError):
    """The benchmark could not run (a process died, a wait timed out, a tool is missing)."""
