"""The development loop: watch the flows, and restart the system's processes when a step's file is saved.

Before anything restarts, ``python -m devtools.check`` loads the flows in a fresh process: a
file saved with a syntax error, an import that fails or a wiring mistake is reported (module,
file, line) and the running processes keep serving the last good code until it is fixed.
"""

from __future__ import annotations

import importlib.util
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import watchfiles

logger = logging.getLogger("conveyor.dev")

#: The files whose change means new code or settings.
WATCHED_SUFFIXES = (".py", ".toml")


def flow_directories(packages: Iterable[str], root: Path) -> list[Path]:
    """The directory of each flow package (found without importing it), or ``root`` if none is found."""
    found: list[Path] = []
    for name in packages:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            spec = None
        locations = list(spec.submodule_search_locations or []) if spec is not None else []
        found += [Path(location) for location in locations]
    return found or [root]


def load_check(env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 60) -> tuple[bool, str]:
    """Run ``python -m devtools.check`` in a fresh process: ``(loaded, what it printed)``."""
    try:
        done = subprocess.run(
            [sys.executable, "-m", "devtools.check"],
            env=env,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return False, f"loading the flows took over {timeout:.0f} s (an import that blocks?)"
    return done.returncode == 0, (done.stdout + done.stderr).strip()


class DevLoop:
    """Watches ``paths`` and calls ``restart`` after a change whose flows load.

    Parameters:
      paths: the directories and files to watch (the flow packages, config.toml).
      restart: restarts the processes; called from the watching thread.
      check: loads the flows apart from this process; ``(loaded, message)``.
      debounce: milliseconds of quiet after a change before acting (an editor writes several times).
    """

    def __init__(
        self,
        paths: list[Path],
        restart: Callable[[], None],
        *,
        check: Callable[[], tuple[bool, str]] = load_check,
        debounce: int = 150,
    ) -> None:
        self.paths = paths
        self.restart = restart
        self.check = check
        self.debounce = debounce
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: Whether the code on disk loaded the last time it changed (the processes run it if so).
        self.healthy = True

    def start(self) -> None:
        """Watch in a daemon thread until :meth:`stop`."""
        self._thread = threading.Thread(target=self._watch, name="conveyor-dev-loop", daemon=True)
        self._thread.start()
        logger.info("Watching %s: saving a step restarts the system.", ", ".join(map(str, self.paths)))

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _watch(self) -> None:
        for changes in watchfiles.watch(
            *self.paths,
            watch_filter=lambda change, path: path.endswith(WATCHED_SUFFIXES),
            debounce=self.debounce,
            step=50,
            stop_event=self._stop,
            raise_interrupt=False,
        ):
            self.changed(sorted({Path(path) for _, path in changes}))

    def changed(self, files: list[Path]) -> None:
        """React to ``files`` having changed: check that the flows load, then restart (or report)."""
        names = ", ".join(file.name for file in files[:5]) + (" ..." if len(files) > 5 else "")
        started = time.monotonic()
        loaded, message = self.check()
        if not loaded:
            self.healthy = False
            logger.error(
                "%s changed and the flows no longer load; still serving the last good code:\n%s", names, message
            )
            return
        if not self.healthy:
            logger.info("The flows load again.")
        self.healthy = True
        logger.info("%s changed (%s); restarting the gateway, the workers and the scheduler.", names, message)
        self.restart()
        logger.info("Restarted in %.1f s.", time.monotonic() - started)
