"""What /proc says about the benchmark's processes and the machine: memory, CPU time, children."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from devtools.processes import children

from .errors import BenchError


def rss_mb(pid: int) -> float:
    """Resident set size (``VmRSS``) of ``pid``, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise BenchError(f"no VmRSS for process {pid}")


def pss_mb(pid: int) -> float | None:
    """Proportional set size of ``pid`` in MiB (shared pages split between their users), if readable."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> float:
    """User + system CPU time ``pid`` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu(master: int) -> float:
    """CPU seconds used so far by the children of ``master`` (the worker processes of a ``dramatiq`` master)."""
    total = 0.0
    for pid in children(master):
        try:
            total += cpu_seconds(pid)
        except OSError:
            continue  # exited meanwhile
    return total


def cpu_busy(seconds: float = 1.0) -> float:
    """How busy the machine's CPUs were over the next ``seconds``, in % (from /proc/stat)."""

    def sample() -> tuple[int, int]:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return sum(values), values[3] + values[4]  # total, idle + iowait

    total, idle = sample()
    time.sleep(seconds)
    total2, idle2 = sample()
    return 100 * (1 - (idle2 - idle) / max(1, total2 - total))


def machine(busy_before: float | None = None) -> dict[str, Any]:
    """Cores, CPU model and memory of this machine, and how busy it was before the benchmark began.

    Other work on the machine skews the figures: ``cpu_busy_before_pct`` (measured by
    :class:`Harness` over a second before it starts anything) says how much there was.
    """
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.partition(":")[2].strip()
            break
    mem_kb = next(
        int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal:")
    )
    return {
        "cpu_busy_before_pct": round(busy_before, 1) if busy_before is not None else None,
        "nproc": os.cpu_count(),
        "cpu": model,
        "ram_gib": round(mem_kb / 1024 / 1024, 1),
        "python": sys.version.split()[0],
    }
