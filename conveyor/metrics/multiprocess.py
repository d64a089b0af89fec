"""The directory every process shares its Prometheus metrics in (prometheus-client's multi-process mode).

prometheus-client decides once per process, when ``prometheus_client`` is first imported, whether
its values live in memory or in files of ``PROMETHEUS_MULTIPROC_DIR``. So each process calls
:func:`prepare_metrics_dir` before anything imports ``prometheus_client``: the gateway and its
children, each ``dramatiq actors`` worker process, the scheduler. :class:`~conveyor.metrics.MetricsSink`
and :func:`~conveyor.metrics.metrics_app` call it themselves and raise :class:`MetricsSetupError` when
it is too late; nothing in ``conveyor.metrics`` imports ``prometheus_client`` before it has run.
(Dramatiq 2.2.1 imports ``prometheus_client`` only in its ``Prometheus`` middleware, which Conveyor
does not use.)

Old files, by one rule applied under a lock of the directory (``.lock``):

- A process is *running* from :func:`prepare_metrics_dir` on (it leaves a ``process_<pid>`` marker)
  until it exits or its pid is gone.
- While some other process runs, the files of processes that ended are folded into one
  ``<type>_archive.db`` per type: counters and histograms keep their totals, so a sum never goes
  backwards (Prometheus would read that as a restart and count the rest again). Their live gauges
  are removed. A process does this as it starts, and the serving process at most once a minute.
- When no other process runs (the whole system was stopped), the starting process empties the
  directory: a new start counts from zero, never carrying yesterday's counters on.

One host only: pids of processes in other pid namespaces (containers sharing the directory) are not
seen, so give each host or container a directory of its own.
"""

from __future__ import annotations

import atexit
import fcntl
import logging
import os
import sys
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..config import Config
from ..errors import ConveyorError

logger = logging.getLogger("conveyor.metrics")

#: What prometheus-client reads the directory from.
ENV = "PROMETHEUS_MULTIPROC_DIR"
#: File types whose values of ended processes are summed (or kept as min/max) into an archive file.
FOLDED = ("counter", "histogram", "summary", "gauge_sum", "gauge_max", "gauge_min")
ARCHIVE = "archive"
MARKER = "process_"

_current: Path | None = None
_hooks_installed = False


class MetricsSetupError(ConveyorError):
    """The metrics directory cannot be used, or ``prometheus_client`` was imported too early."""


def prepare_metrics_dir(config: Config) -> Path:
    """Make ``[metrics] path`` (absolute, created) this process's metrics directory, and return it.

    Call it in every process before anything imports ``prometheus_client``; calling it again with
    the same directory does nothing. A second, different directory in one process (tests that build
    several runtimes) takes over: values recorded after it go there.

    Raises :class:`MetricsSetupError` when ``prometheus_client`` was already imported without a
    directory (its values would stay in this process, unseen by ``/metrics``), or the directory
    cannot be created.
    """
    global _current
    path = config.metrics_path().resolve()
    if path == _current:
        return path
    _refuse_late_import()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MetricsSetupError(
            f"Cannot create the metrics directory {path} ({exc}): set [metrics] path in config.toml to a "
            "writable directory, or [metrics] enabled = false"
        ) from None
    if _current is not None:
        _close_open_files()
    os.environ[ENV] = str(path)
    _current = path
    _mark_running(path)
    sweep(path, fresh_start=True)
    _install_hooks()
    return path


def current_dir() -> Path | None:
    """The directory :func:`prepare_metrics_dir` last set in this process, if any."""
    return _current


def sweep(path: Path, *, fresh_start: bool = False) -> None:
    """Apply the rule of the module docstring to ``path`` now.

    ``fresh_start``: empty the directory when no process but this one runs (what a starting process
    asks for; the serving process's periodic sweep only folds).
    """
    with locked(path, exclusive=True):
        by_pid: dict[int, list[Path]] = defaultdict(list)
        archives: list[Path] = []
        for entry in path.iterdir():
            pid = _pid_of(entry.name)
            if pid is not None:
                by_pid[pid].append(entry)
            elif entry.name.endswith(f"_{ARCHIVE}.db"):
                archives.append(entry)
        ended = {pid: files for pid, files in by_pid.items() if pid != os.getpid() and not _alive(pid)}
        others_running = any(pid != os.getpid() and pid not in ended for pid in by_pid)
        if fresh_start and not others_running:
            for files in ended.values():
                _remove(files)
            _remove(archives)
            return
        if ended:
            _fold([f for files in ended.values() for f in files], path)


@contextmanager
def locked(path: Path, *, exclusive: bool) -> Iterator[None]:
    """Hold the directory's lock: shared while a scrape reads the files, exclusive while a sweep moves them."""
    with open(path / ".lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _refuse_late_import() -> None:
    values = sys.modules.get("prometheus_client.values")
    if values is not None and values.ValueClass is values.MutexValue:
        raise MetricsSetupError(
            "prometheus_client was imported before conveyor.metrics.prepare_metrics_dir() ran in this "
            "process (by a flow module or a library imported first), so its metrics would stay in this "
            "process where GET /metrics cannot see them. Import prometheus_client after the runtime boots, "
            f"set {ENV} to the [metrics] path in the environment, or set [metrics] enabled = false."
        )


def _close_open_files() -> None:
    """Close the files this process writes, so values made from now on open files in the new directory."""
    values = sys.modules.get("prometheus_client.values")
    close = getattr(getattr(values, "ValueClass", None), "close_all_files", None)
    if close is not None:
        close()


def _mark_running(path: Path) -> None:
    (path / f"{MARKER}{os.getpid()}").touch()


def _install_hooks() -> None:
    global _hooks_installed
    if _hooks_installed:
        return
    _hooks_installed = True
    atexit.register(_at_exit)
    # gateway children, dramatiq's worker processes: a forked child is a process of its own.
    os.register_at_fork(after_in_child=_after_fork)


def _after_fork() -> None:
    if _current is not None:
        try:
            _mark_running(_current)
        except OSError:
            logger.debug("Cannot mark process %d in %s", os.getpid(), _current, exc_info=True)


def _at_exit() -> None:
    """What prometheus-client's ``mark_process_dead`` does, plus the marker: a gone process's live gauges go."""
    if _current is None:
        return
    pid = os.getpid()
    try:
        _remove([*_current.glob(f"gauge_live*_{pid}.db"), _current / f"{MARKER}{pid}"])
    except OSError:
        logger.debug("Cannot clear process %d's files in %s", pid, _current, exc_info=True)


def _pid_of(name: str) -> int | None:
    """The pid a file of the directory belongs to (``counter_123.db``, ``process_123``), if any."""
    if name.startswith(MARKER):
        digits = name[len(MARKER) :]
    elif name.endswith(".db"):
        digits = name[:-3].rpartition("_")[2]
    else:
        return None
    return int(digits) if digits.isdigit() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process holds the pid now; its files are left alone
    return True


def _fold(files: list[Path], path: Path) -> None:
    """Add the values of ended processes' ``files`` into the archive files; remove the rest of them."""
    from prometheus_client.mmap_dict import MmapedDict, mmap_key
    from prometheus_client.multiprocess import MultiProcessCollector

    groups: dict[str, list[Path]] = defaultdict(list)
    for file in files:
        kind = file.name[:-3].rpartition("_")[0] if file.name.endswith(".db") else ""
        groups[kind].append(file)
    for kind, members in groups.items():
        if kind not in FOLDED:
            _remove(members)  # live gauges, markers, per-pid gauges: meaningless once the process is gone
            continue
        archive = path / f"{kind}_{ARCHIVE}.db"
        sources = [str(f) for f in ([archive] if archive.exists() else []) + members]
        merged = MultiProcessCollector.merge(sources, accumulate=False)  # type: ignore[no-untyped-call]
        staging = path / f"{kind}_{ARCHIVE}.db.new"
        staging.unlink(missing_ok=True)
        out = MmapedDict(str(staging))  # type: ignore[no-untyped-call]
        try:
            for metric in merged:
                for sample in metric.samples:
                    names = list(sample.labels)
                    key = mmap_key(
                        metric.name, sample.name, names, [sample.labels[n] for n in names], metric.documentation
                    )
                    out.write_value(key, sample.value, 0.0)  # type: ignore[no-untyped-call]
        finally:
            out.close()  # type: ignore[no-untyped-call]
        # A scrape holds the shared lock, so it never sees the archive and its sources counted twice.
        os.replace(staging, archive)
        _remove(members)


def _remove(files: list[Path]) -> None:
    for file in files:
        file.unlink(missing_ok=True)
