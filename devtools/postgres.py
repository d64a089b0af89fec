"""A throwaway PostgreSQL server for tests and benchmarks: a cluster of its own, on a free port on
loopback, depending on no system service. A first start takes about a second (initdb, mostly),
a start on existing data a fifth of one.

Example::

    with PostgresServer(tmp_path / "postgres") as server:
        psycopg.connect(server.url)

``python -m devtools.postgres`` starts one under ``var/postgres``, prints its URL and stops it on
Ctrl-C. Needs Debian's ``postgresql`` package (or ``pg_ctl`` and ``initdb`` on PATH).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from types import TracebackType

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow

from devtools.processes import HOST, descendants, free_port, living, wait_for

#: Where Debian installs each major version's programs (not on PATH).
DEBIAN_ROOT = Path("/usr/lib/postgresql")
INSTALL_HINT = "PostgreSQL is not installed: apt-get install postgresql (scripts/test.sh does it)"


def _version(bin_dir: Path) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in bin_dir.parent.name.split("."))
    except ValueError:
        return (-1,)


def _find_bin() -> Path | None:
    debian = sorted((initdb.parent for initdb in DEBIAN_ROOT.glob("*/bin/initdb")), key=_version)
    if debian:
        return debian[-1]
    pg_ctl = shutil.which("pg_ctl")
    if pg_ctl:
        bin_dir = Path(pg_ctl).resolve().parent  # /usr/local/bin/pg_ctl may be a link to the real directory
        if (bin_dir / "initdb").exists():
            return bin_dir
    return None


def postgres_installed() -> bool:
    """Whether PostgreSQL's server programs are here."""
    return _find_bin() is not None


def pg_bin() -> Path:
    """The directory of PostgreSQL's programs: Debian's newest major version, else ``pg_ctl``'s on PATH."""
    found = _find_bin()
    if found is None:
        raise RuntimeError(INSTALL_HINT)
    return found


class PostgresServer:
    """A PostgreSQL server on ``127.0.0.1:port`` whose superuser and database are both ``name``
    (trust authentication, no password); its log is ``base/log``.

    Its data is in ``base/data``, kept by :meth:`stop` and :meth:`kill` (a later :meth:`start`
    recovers it) and removed on leaving a ``with`` block. It is tuned for tests: no fsync and no
    full-page writes, so an OS crash may corrupt it, but a server crash loses no committed row.

    initdb refuses to run as root: as root the server runs as the ``postgres`` user, with its
    data in a directory of its own under /tmp (pytest's temporary directories are 0o700, out of
    ``postgres``'s reach).
    """

    def __init__(self, base: Path, *, port: int | None = None, name: str = "conveyor") -> None:
        self.base = base.absolute()
        self.port = port if port is not None else free_port()
        self.name = name
        self.log_path = self.base / "log"
        self._as_postgres = os.geteuid() == 0
        self._own_dir: Path | None = None
        if self._as_postgres:
            self._own_dir = Path(tempfile.mkdtemp(prefix=f"{name}-postgres-", dir="/tmp"))
            try:
                shutil.chown(self._own_dir, "postgres", "postgres")
            except LookupError:
                self._own_dir.rmdir()
                raise RuntimeError("running as root, but there is no postgres user to run PostgreSQL as") from None
            self.data_dir = self._own_dir / "data"
        else:
            self.data_dir = self.base / "data"

    @property
    def url(self) -> str:
        return f"postgresql://{self.name}@{HOST}:{self.port}/{self.name}"

    def _options(self) -> str:
        # No Unix socket: clients use TCP, so no socket path (~107 characters at most) and no
        # /var/run/postgresql. synchronous_commit stays on: off, a crash loses recent commits, and
        # with fsync off a commit costs a write(2) anyway.
        return (
            f"-c listen_addresses={HOST} -p {self.port} -c unix_socket_directories='' "
            "-c fsync=off -c full_page_writes=off -c max_connections=200"
        )

    def _run(self, *argv: str, timeout: float) -> None:
        """Run PostgreSQL's program ``argv[0]``, as ``postgres`` if we are root; its output goes to the log,
        and so does the server's when it is ``pg_ctl start`` (it inherits the file)."""
        command = [str(pg_bin() / argv[0]), *argv[1:]]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        self.base.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            result = subprocess.run(
                command,
                cwd=self.data_dir.parent,  # one the postgres user can enter
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                start_new_session=True,  # a Ctrl-C meant for us does not reach the server
            )
        if result.returncode:
            raise RuntimeError(f"{argv[0]} {argv[1]} exited with code {result.returncode}")

    def _pg_ctl(self, action: str, *args: str, timeout: float) -> None:
        self._run(
            "pg_ctl", action, "-D", str(self.data_dir), "-w", "-t", str(int(timeout)), *args, timeout=timeout + 10
        )

    def log(self) -> str:
        """Everything the server (and the programs run for it) wrote so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _failed(self, what: str, error: Exception) -> RuntimeError:
        tail = "\n".join(self.log().splitlines()[-20:])
        return RuntimeError(f"PostgreSQL on port {self.port} {what}: {error}; {self.log_path} ends with:\n{tail}")

    def _wait_ready(self, timeout: float) -> None:
        """Wait until it accepts connections; create database ``name`` if it is missing."""

        def connect() -> psycopg.Connection[TupleRow] | None:
            try:
                return psycopg.connect(host=HOST, port=self.port, user=self.name, dbname="postgres", connect_timeout=2)
            except psycopg.OperationalError:
                return None

        connection = wait_for(connect, timeout, what=f"PostgreSQL on port {self.port}")
        assert connection is not None  # wait_for returns a truthy value
        with connection:
            connection.autocommit = True
            if not connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.name,)).fetchone():
                connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.name)))

    def start(self, timeout: float = 30) -> None:
        """Create the cluster if there is none yet, start the server and wait until it accepts connections."""
        pg_bin()  # not installed: say so, not "did not start"
        try:
            if not (self.data_dir / "PG_VERSION").exists():
                self._run(
                    "initdb",
                    *("-D", str(self.data_dir), "-U", self.name, "--auth=trust", "-E", "UTF8"),
                    *("--locale=C", "--no-sync", "--no-instructions"),  # C: whatever locales the machine has
                    timeout=timeout,
                )
            self._pg_ctl("start", "-o", self._options(), timeout=timeout)
            self._wait_ready(timeout)
        except (RuntimeError, TimeoutError, subprocess.TimeoutExpired) as error:
            raise self._failed("did not start", error) from error

    def restart(self, mode: str = "immediate", timeout: float = 30) -> None:
        """``pg_ctl restart -m MODE`` (immediate: like a crash, with recovery at the start) and wait
        until it accepts connections again."""
        try:
            self._pg_ctl("restart", "-m", mode, "-o", self._options(), timeout=timeout)
            self._wait_ready(timeout)
        except (RuntimeError, TimeoutError, subprocess.TimeoutExpired) as error:
            raise self._failed("did not restart", error) from error

    @property
    def pid(self) -> int | None:
        """The postmaster's process id, or ``None`` if it is not running."""
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if living({pid}) else None  # a pid file a killed server left names no one

    def stop(self, timeout: float = 30) -> None:
        """Stop the server at once (``-m immediate``: nothing to keep, it recovers at the next start)."""
        if self.pid is None:
            return
        try:
            self._pg_ctl("stop", "-m", "immediate", timeout=timeout)
        except (RuntimeError, subprocess.TimeoutExpired) as error:
            raise self._failed("did not stop", error) from error

    def kill(self, timeout: float = 30) -> None:
        """SIGKILL the postmaster, for fault tests, and wait until its processes are gone (so that
        :meth:`start` can follow: it refuses while any of them holds the shared memory)."""
        pid = self.pid
        if pid is None:
            return
        processes = descendants(pid) | {pid}
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not living(processes), timeout, what=f"the processes of PostgreSQL on port {self.port}")
        # The next postmaster would take this one for alive while it is a zombie, and init can take
        # a second or more to reap it: remove the lock file it could not.
        (self.data_dir / "postmaster.pid").unlink(missing_ok=True)

    def remove(self) -> None:
        """Delete its data (not the log); the server must be stopped."""
        shutil.rmtree(self._own_dir or self.data_dir, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()
        self.remove()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m devtools.postgres", description=__doc__)
    parser.add_argument("--base", default="var/postgres", help="where its log (and, unless root, its data) goes")
    parser.add_argument("--port", type=int, help="default: a free one")
    args = parser.parse_args()
    if not postgres_installed():
        sys.exit(INSTALL_HINT)
    # Both leave the with block: stop and clean up. SIGINT too, as a shell's background job ignores it.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: sys.exit(0))
    with PostgresServer(Path(args.base), port=args.port) as server:
        print(server.url, flush=True)
        signal.pause()


if __name__ == "__main__":
    main()
