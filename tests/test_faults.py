"""The fault run's short form: nothing accepted is lost, no effect happens twice."""

from __future__ import annotations

import pytest

from tests.faults import run

pytestmark = [pytest.mark.integration, pytest.mark.serial]


def test_no_accepted_order_is_lost_under_faults():
    figures = run(orders=1000, rate=60)
    print(f"\nfault run: {figures}")
    # While RabbitMQ is down (several seconds) the gateway answers 503: the client knows to retry.
    assert figures.accepted >= 300
    assert set(figures.rejections) <= {"503", "unreachable", "ReadError", "WriteError", "RemoteProtocolError"}
    assert len(figures.faults) == 7
    assert figures.lost == 0
    assert figures.completed == figures.accepted
    assert figures.duplicate_notifications == 0
    # Each order's stock was taken exactly once; every accepted order is among them, plus any that
    # completed although the gateway died before answering (the client saw no 2xx).
    assert figures.stock_taken == figures.stock_expected == figures.accepted + figures.completed_unanswered
    assert figures.completed_unanswered <= 5  # only requests in flight when the gateway was killed
