"""The pets flow end to end: POST /pets, then its feeding-reminder job, through a real gateway,
RabbitMQ and dramatiq workers.

The flow's behaviour (validation, updates, soft deletes, the reaper, a reminder for a pet that
is gone) is tested in process in tests/test_flow_pets.py; this is the smoke test that the
processes do the same.
"""

from __future__ import annotations

import time

import pytest

from devtools.processes import wait_for
from tests.flow_support import flow_system

pytestmark = pytest.mark.integration

DAY_MS = 24 * 60 * 60 * 1000


def test_create_pet_answers_201_then_a_worker_process_sets_the_feeding_reminder(rabbitmq, tmp_path):
    with flow_system(rabbitmq, tmp_path) as system:  # gateway and workers; the reaper's scheduler is not needed
        before = int(time.time() * 1000)
        response = system.http.post("/pets", json={"name": "  Max  ", "species": "dog", "ageMonths": 24})
        assert response.status_code == 201, response.text
        pet = response.json()
        assert (pet["name"], pet["status"]) == ("Max", "new")
        assert response.headers["location"] == f"/pets/{pet['id']}"
        assert "notes" not in pet  # the job fills it in after the answer

        started = time.monotonic()
        reminded = wait_for(lambda: (p := system.http.get(f"/pets/{pet['id']}").json()).get("nextFeedingAt") and p)
        print(f"\nPOST /pets to feeding reminder set: {(time.monotonic() - started) * 1000:.0f} ms")
        assert reminded["notes"] == "Welcome to our pet store! We'll take great care of this pet."
        assert abs(reminded["nextFeedingAt"] - (before + DAY_MS)) < 60_000  # about 24 hours from now
        assert reminded["id"] in {p["id"] for p in system.http.get("/pets").json()}
