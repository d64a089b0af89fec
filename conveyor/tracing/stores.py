"""Which trace store a process opens: PostgreSQL when the state is there, else a SQLite file of its own."""

from __future__ import annotations

from ..config import Config
from .queries import TraceStore


def open_trace_store(config: Config) -> TraceStore:
    """The trace store ``config`` names: the state's PostgreSQL database when ``[state] url`` is set,
    else the SQLite file ``[tracing] path`` (``var/traces.db``). Nothing connects until the first call.

    Raises ValueError if ``[tracing] path`` is the state's own file, which tracing must never write.
    """
    if config.state.url:
        from .postgres_store import PostgresTraceStore

        return PostgresTraceStore(config.state.url)
    from .sqlite_store import SqliteTraceStore

    path = config.trace_path()
    if path.resolve() == config.state_path().resolve():
        raise ValueError(
            f"[tracing] path is {config.tracing.path!r}, the state's own file ([state] path): give traces a "
            "file of their own, such as 'var/traces.db'"
        )
    return SqliteTraceStore(path)
