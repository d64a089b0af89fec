"""What the operator commands print: tables and one dead message in full."""

from __future__ import annotations

from conveyor.ops.dlq import DeadMessage
from conveyor.ops.queue_stats import QueueStats
from conveyor.ops.text import dead_message_text, dead_messages_table, stats_table, table


def dead(error: str | None, **fields) -> DeadMessage:
    values = {
        "step": "ProcessOrder",
        "message_id": "m-1",
        "topic": "process-order",
        "trace_id": "t-1",
        "data": {"orderId": "ord-1"},
        "attempts": 3,
        "error": error,
        "traceback": error,
        "failed_at": "2026-01-02T03:04:05.006Z",
        "enqueued_at": "2026-01-02T03:04:04.000Z",
        "options": {"retries": 2},
    }
    return DeadMessage(**{**values, **fields})


def test_table_pads_columns_and_aligns_the_chosen_ones_right():
    assert table(["A", "N"], [["long name", 1], ["x", 100]], right=[1]).splitlines() == [
        "A            N",
        "long name    1",
        "x          100",
    ]


def test_stats_table_aligns_counts_and_marks_queues_not_declared_yet():
    stats = [
        QueueStats("ProcessOrder", "ProcessOrder", 12, 3, 1, 0, 2, True),
        QueueStats("New", "New", 0, 0, 0, 0, 0, False),
    ]
    assert stats_table(stats).splitlines() == [
        "STEP          READY  UNACKED  DELAYED  DEAD  CONSUMERS",
        "ProcessOrder     12        3        1     0          2",
        "New               -        -        -     -          -",
    ]


def test_dead_messages_table_cuts_long_errors_to_one_line_and_names_missing_ones():
    lines = dead_messages_table([dead("ValueError: " + "x" * 200 + "\nmore"), dead(None, message_id="m-2")])
    header, long, missing = lines.splitlines()
    assert header.split() == ["STEP", "MESSAGE", "ID", "FAILED", "AT", "ATTEMPTS", "ERROR"]
    assert long.endswith("...") and "\n" not in long
    assert len(long.split("  3  ")[1]) == 80
    assert missing.endswith("(not recorded)")
    assert dead_messages_table([]) == "No dead messages."


def test_one_dead_message_in_full():
    text = dead_message_text(dead("KeyError: 'sku'"))
    assert text.splitlines()[:3] == ["Message    m-1", "Step       ProcessOrder", "Topic      process-order"]
    assert "Error      KeyError: 'sku'" in text
    assert text.endswith('Data\n  {\n    "orderId": "ord-1"\n  }')
