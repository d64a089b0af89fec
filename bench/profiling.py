"""Sample running worker processes with py-spy, and say which functions and packages the samples fall in.

py-spy is not a project dependency: ``pip install py-spy`` in your own environment to use
``--profile``. It samples without stopping the process (``--nonblocking``) and keeps only
the thread holding the GIL (``--gil``): in a threaded Python worker that is the work that
competes for the one interpreter, while waits (for a message, a socket, a lock) drop out.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

from .harness import ROOT

#: ``func (path/to/file.py)`` as py-spy writes a frame with ``--nolineno``.
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*)\)$")


class PySpy:
    """``py-spy record`` attached to ``pid`` and its child processes, writing collapsed stacks to ``output``.

    Parameters:
      pid: the process to sample (a ``dramatiq`` master: its workers are followed).
      output: where the collapsed stacks go (one ``frame;frame;... count`` line per stack).
      rate: samples per second.
    """

    def __init__(self, pid: int, output: Path, *, rate: int = 500) -> None:
        executable = shutil.which("py-spy")
        if executable is None:
            raise FileNotFoundError("py-spy is not installed: pip install py-spy (in your own environment)")
        self.output = output
        self._log = open(output.with_suffix(".log"), "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [
                executable,
                "record",
                "--pid",
                str(pid),
                "--subprocesses",
                "--nonblocking",
                "--gil",
                "--nolineno",
                "--rate",
                str(rate),
                "--format",
                "raw",
                "--output",
                str(output),
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    def stop(self, timeout: float = 30) -> Path:
        """Stop sampling (py-spy writes its file on SIGINT); returns the file."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._log.close()
        return self.output


def summarize(path: Path, *, top: int = 12) -> dict[str, Any]:
    """Self and inclusive time, by package and by function, as % of samples."""
    self_by_package: Counter[str] = Counter()
    self_by_function: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    inclusive_by_package: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_parse(frame) for frame in stack.split(";")]
        frames = [frame for frame in frames if frame is not None]
        if not frames:
            continue
        total += count
        func, file = frames[-1]
        self_by_package[_package(file)] += count
        self_by_function[f"{func} ({_short(file)})"] += count
        for name in {f"{f} ({_short(p)})" for f, p in frames}:
            inclusive[name] += count
        for package in {_package(p) for _, p in frames}:
            inclusive_by_package[package] += count

    def share(counter: Counter[str]) -> list[tuple[str, float]]:
        return [(name, round(100 * n / total, 1)) for name, n in counter.most_common(top)] if total else []

    return {
        "samples": total,
        "self_by_package_pct": share(self_by_package),
        "inclusive_by_package_pct": share(inclusive_by_package),
        "self_by_function_pct": share(self_by_function),
        "inclusive_by_function_pct": share(inclusive),
    }


def _parse(frame: str) -> tuple[str, str] | None:
    match = _FRAME.match(frame.strip())
    if match is None:
        return None  # "process 123:..." and "thread (0x...)" header frames
    return match["func"], match["file"]


def _short(file: str) -> str:
    """``.../site-packages/dramatiq/worker.py`` -> ``dramatiq/worker.py``."""
    for marker in ("site-packages/", f"{ROOT}/", "lib/python3."):
        if marker in file:
            rest = file.split(marker, 1)[1]
            return rest.split("/", 1)[1] if marker == "lib/python3." else rest
    return file


def _package(file: str) -> str:
    short = _short(file)
    if "site-packages/" not in file and "/lib/python3." in file:
        return f"stdlib:{short.split('/')[0].removesuffix('.py')}"
    return short.split("/")[0].removesuffix(".py")
