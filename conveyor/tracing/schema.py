"""The trace store's tables and the statements both backends run (``?`` placeholders).

Three tables: ``conveyor_trace_spans`` (keyed by trace id, then span id), ``conveyor_trace_logs``
and ``conveyor_trace_traces``, a row per trace with what a trace list shows and filters on.
"""

from __future__ import annotations

SPANS = "conveyor_trace_spans"
LOGS = "conveyor_trace_logs"
TRACES = "conveyor_trace_traces"
#: The version :func:`schema` makes; bump it with every change there.
SCHEMA_VERSION = 1

SPAN_COLUMNS = (
    "span_id, trace_id, parent_id, kind, name, started_at, duration_ms, status, step, flow, message_id, attempt, "
    "queue_delay_ms, error_type, error, traceback, http_status, payload, attrs, events"
)
LOG_COLUMNS = "trace_id, span_id, at, level, level_no, logger, message, step, fields"
SUMMARY_COLUMNS = "trace_id, name, started_at, ended_at, spans, errors, status"
#: What a trace list reads of each span of its traces (:func:`~conveyor.tracing.rows.summary_of`).
FOR_LIST = "trace_id, step, flow, started_at, duration_ms, status"

#: Numbers of the log levels, for "this level and above".
LEVELS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "WARN": 30, "ERROR": 40, "CRITICAL": 50, "FATAL": 50}
#: Trace ids per statement in deletes and summary reads.
CHUNK = 500


def schema(log_id: str) -> tuple[str, ...]:
    """The DDL of both backends (SQLite reads ``double precision`` as REAL); ``log_id`` is the logs' key column."""
    return (
        f"""CREATE TABLE IF NOT EXISTS {SPANS} (
            span_id text NOT NULL, trace_id text NOT NULL, parent_id text, kind text NOT NULL,
            name text NOT NULL, started_at double precision NOT NULL, duration_ms double precision NOT NULL,
            status text NOT NULL, step text, flow text, message_id text, attempt integer,
            queue_delay_ms double precision, error_type text, error text, traceback text, http_status integer,
            payload text, attrs text NOT NULL, events text NOT NULL,
            PRIMARY KEY (trace_id, span_id))""",
        f"CREATE INDEX IF NOT EXISTS {SPANS}_message ON {SPANS} (message_id) WHERE message_id IS NOT NULL",
        f"CREATE INDEX IF NOT EXISTS {SPANS}_step ON {SPANS} (step, started_at) WHERE step IS NOT NULL",
        f"CREATE INDEX IF NOT EXISTS {SPANS}_flow ON {SPANS} (flow) WHERE flow IS NOT NULL",
        f"""CREATE TABLE IF NOT EXISTS {LOGS} (
            {log_id}, trace_id text NOT NULL, span_id text, at double precision NOT NULL, level text NOT NULL,
            level_no integer NOT NULL, logger text NOT NULL, message text NOT NULL, step text, fields text NOT NULL)""",
        f"CREATE INDEX IF NOT EXISTS {LOGS}_trace ON {LOGS} (trace_id, at)",
        f"CREATE INDEX IF NOT EXISTS {LOGS}_at ON {LOGS} (at)",
        f"""CREATE TABLE IF NOT EXISTS {TRACES} (
            trace_id text PRIMARY KEY, name text NOT NULL, started_at double precision NOT NULL,
            ended_at double precision NOT NULL, spans integer NOT NULL, errors integer NOT NULL,
            status text NOT NULL, rooted integer NOT NULL DEFAULT 0)""",
        f"CREATE INDEX IF NOT EXISTS {TRACES}_start ON {TRACES} (started_at)",
        f"CREATE INDEX IF NOT EXISTS {TRACES}_status ON {TRACES} (status, started_at)",
        f"CREATE INDEX IF NOT EXISTS {TRACES}_end ON {TRACES} (ended_at)",
    )


UPSERT_SPAN = (
    f"INSERT INTO {SPANS} ({SPAN_COLUMNS}) VALUES ({', '.join('?' * 20)}) "
    "ON CONFLICT (trace_id, span_id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in SPAN_COLUMNS.split(", ")[1:])
)
INSERT_LOG = f"INSERT INTO {LOGS} ({LOG_COLUMNS}) VALUES ({', '.join('?' * 9)})"
INSERT_NEW_SPAN = (
    f"INSERT INTO {SPANS} ({SPAN_COLUMNS}) VALUES ({', '.join('?' * 20)}) ON CONFLICT (trace_id, span_id) DO NOTHING"
)
SET_SUMMARY = (
    f"INSERT INTO {TRACES} ({SUMMARY_COLUMNS}, rooted) VALUES ({', '.join('?' * 8)}) "
    "ON CONFLICT (trace_id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in [*SUMMARY_COLUMNS.split(", ")[1:], "rooted"])
)


ENSURE_SUMMARY = (
    f"INSERT INTO {TRACES} ({SUMMARY_COLUMNS}, rooted) VALUES ({', '.join('?' * 8)}) ON CONFLICT (trace_id) DO NOTHING"
)


def add_to_summary(least: str, greatest: str) -> str:
    """The statement that adds a batch's summary of a trace's new spans to the summary so far, in
    the database (``least``/``greatest``: the backend's two-argument min and max)."""
    t, x = TRACES, "excluded"
    return (
        f"INSERT INTO {t} ({SUMMARY_COLUMNS}, rooted) VALUES ({', '.join('?' * 8)}) "
        f"ON CONFLICT (trace_id) DO UPDATE SET "
        f"name = CASE WHEN {t}.rooted = 1 THEN {t}.name WHEN {x}.rooted = 1 THEN {x}.name "
        f"WHEN {x}.started_at < {t}.started_at THEN {x}.name ELSE {t}.name END, "
        f"rooted = {greatest}({t}.rooted, {x}.rooted), "
        f"started_at = {least}({t}.started_at, {x}.started_at), "
        f"ended_at = {greatest}({t}.ended_at, {x}.ended_at), "
        f"spans = {t}.spans + {x}.spans, errors = {t}.errors + {x}.errors, "
        f"status = CASE WHEN 'failed' IN ({t}.status, {x}.status) THEN 'failed' "
        f"WHEN 'retried' IN ({t}.status, {x}.status) THEN 'retried' ELSE 'ok' END"
    )
