"""What the operator commands (``python -m actors stats`` and ``dlq``) print: plain-text tables and records."""

from __future__ import annotations

import json
from collections.abc import Sequence

from .dlq import DeadMessage, Purge, Replay
from .queue_stats import QueueStats

#: Longer errors are cut in tables; ``dlq show`` prints them whole.
ERROR_WIDTH = 80


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], *, right: Sequence[int] = ()) -> str:
    """Columns padded to their widest cell; the columns whose indexes are in ``right`` align right.

    >>> print(table(["STEP", "READY"], [["A", 1], ["Longer", 10]], right=[1]))
    STEP    READY
    A           1
    Longer     10
    """
    cells = [[str(cell) for cell in row] for row in [headers, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        padded = [
            cell.rjust(w) if i in right else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(padded).rstrip())
    return "\n".join(lines)


def stats_table(stats: Sequence[QueueStats]) -> str:
    """One line per step; ``-`` for a step whose queue RabbitMQ has not seen yet."""
    rows = []
    for s in stats:
        counts = [s.ready, s.unacknowledged, s.delayed, s.dead_lettered, s.consumers]
        rows.append([s.step, *(counts if s.declared else ["-"] * len(counts))])
    headers = ["STEP", "READY", "UNACKED", "DELAYED", "DEAD", "CONSUMERS"]
    return table(headers, rows, right=range(1, len(headers)))


def dead_messages_table(messages: Sequence[DeadMessage]) -> str:
    """The dead messages, one per line, with their errors cut to :data:`ERROR_WIDTH`."""
    if not messages:
        return "No dead messages."
    rows = [[m.step, m.message_id, m.failed_at or "?", m.attempts, _cut(m.error or "(not recorded)")] for m in messages]
    return table(["STEP", "MESSAGE ID", "FAILED AT", "ATTEMPTS", "ERROR"], rows, right=[3])


def dead_message_text(message: DeadMessage) -> str:
    """Everything about one dead message, a field per line, the data as indented JSON."""
    fields = [
        ("Message", message.message_id),
        ("Step", message.step),
        ("Topic", message.topic or "-"),
        ("Trace", message.trace_id or "-"),
        ("Attempts", message.attempts),
        ("Failed at", message.failed_at or "?"),
        ("Error", message.error or "(not recorded)"),
        ("Traceback", message.traceback or "(not recorded)"),
        ("Enqueued", message.enqueued_at),
        ("Options", json.dumps(message.options, sort_keys=True)),
    ]
    width = max(len(name) for name, _ in fields)
    lines = [f"{name.ljust(width)}  {value}" for name, value in fields]
    data = json.dumps(message.data, indent=2, sort_keys=True).replace("\n", "\n  ")
    return "\n".join([*lines, "Data", f"  {data}"])


def replay_line(replay: Replay) -> str:
    return f"Replayed {replay.message_id} of {replay.step} as {replay.new_message_id} (in its trace {replay.trace_id})"


def purge_line(purge: Purge) -> str:
    return f"Purged {purge.messages} dead message(s) and {purge.records} failure record(s) of {purge.step}."


def _cut(text: str) -> str:
    text = " ".join(text.split())  # one line, whatever the exception's message held
    return text if len(text) <= ERROR_WIDTH else text[: ERROR_WIDTH - 3] + "..."
