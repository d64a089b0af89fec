"""The pets flow (seed 003), in process: the whole flow through the gateway's app, and one step at a time.

tests/test_integration_pets.py runs POST /pets and its feeding-reminder job once through the
real gateway, RabbitMQ and dramatiq worker processes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor.testing import FlowEnvironment, StepEnvironment
from flows.pets import set_next_feeding_reminder

CONFIG = Path(__file__).resolve().parent.parent / "config.toml"

DAY_MS = 24 * 60 * 60 * 1000


@pytest.fixture
def flow() -> Iterator[FlowEnvironment]:
    """The pets flow with the project's config.toml."""
    with FlowEnvironment("flows.pets", config=CONFIG) as environment:
        yield environment


def create(flow: FlowEnvironment, **body) -> dict:
    response = flow.http.post("/pets", json={"name": "Max", "species": "dog", "ageMonths": 24, **body})
    assert response.status_code == 201, response.text
    return response.json()


def stored_pet(pet_id: str, name: str, updated_at: int) -> dict:
    return {
        "id": pet_id,
        "name": name,
        "species": "cat",
        "ageMonths": 3,
        "status": "available",
        "createdAt": updated_at,
        "updatedAt": updated_at,
    }


# -- creating a pet, and its background job ------------------------------------------------


def test_create_pet_answers_201_then_the_background_job_sets_the_feeding_reminder(flow):
    before = int(time.time() * 1000)
    response = flow.http.post("/pets", json={"name": "  Max  ", "species": "dog", "ageMonths": 24})
    assert response.status_code == 201
    pet = response.json()
    assert pet["name"] == "Max"  # trimmed
    assert (pet["species"], pet["ageMonths"], pet["status"]) == ("dog", 24, "new")
    assert before <= pet["createdAt"] == pet["updatedAt"]
    assert response.headers["location"] == f"/pets/{pet['id']}"
    assert "notes" not in pet  # the job fills it in after the answer
    flow.join()

    [job] = flow.sent_to("SetNextFeedingReminder")
    assert (job.topic, job.data["petId"]) == ("pet.feeding.reminder.enqueued", pet["id"])
    reminded = flow.http.get(f"/pets/{pet['id']}").json()
    assert reminded["notes"] == "Welcome to our pet store! We'll take great care of this pet."
    assert abs(reminded["nextFeedingAt"] - (before + DAY_MS)) < 60_000  # about 24 hours from now
    [logged] = [line for line in flow.logs if line.message == "Next feeding reminder set"]
    assert (logged.step, logged.fields["petId"]) == ("SetNextFeedingReminder", pet["id"])


def test_pet_ids_count_up_from_1(flow):
    assert [create(flow, name=name)["id"] for name in ("A", "B", "C")] == ["1", "2", "3"]


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"species": "dog", "ageMonths": 1}, {"name"}),
        ({"name": "   ", "species": "dog", "ageMonths": 1}, {"name"}),
        ({"name": "Rex", "species": "fish", "ageMonths": 1}, {"species"}),
        ({"name": "Rex", "species": "dog", "ageMonths": -1}, {"ageMonths"}),
        ({"name": "Rex", "species": "dog", "ageMonths": 2.5}, {"ageMonths"}),
        ({"name": "Rex", "species": "dog", "ageMonths": "3"}, {"ageMonths"}),
    ],
)
def test_invalid_pet_is_refused_with_400_and_nothing_stored_or_queued(flow, body, fields):
    response = flow.http.post("/pets", json=body)
    assert response.status_code == 400
    assert response.json()["error"] == "Invalid request body"
    assert {f["field"] for f in response.json()["fields"]} == fields
    flow.join()
    assert flow.state.list("pets") == [] and flow.sent == []


def test_a_reminder_for_a_pet_deleted_or_gone_before_its_job_ran_changes_nothing():
    with StepEnvironment() as env:
        deleted = {**stored_pet("7", "Gone", 1000), "status": "deleted", "deletedAt": 1000, "purgeAt": 2000}
        env.state.set("pets", "7", deleted)
        for pet_id in ("7", "8"):  # soft-deleted; purged (or never there)
            run = env.run(set_next_feeding_reminder.handler, {"petId": pet_id, "enqueuedAt": 1000})
            assert [line.message for line in run.logs if line.level == "ERROR"] == [
                "Failed to set feeding reminder - pet not found"
            ]
        assert env.state.get("pets", "7") == deleted  # not given notes or a feeding time
        assert env.state.get("pets", "8") is None  # no partial pet recreated


# -- reading and updating ------------------------------------------------------------------


def test_get_list_and_partial_update(flow):
    cat = create(flow, name="Luna", species="cat", ageMonths=6)
    flow.join()  # the reminder job has updated it
    cat = flow.http.get(f"/pets/{cat['id']}").json()
    assert cat["name"] == "Luna"
    assert cat["id"] in {p["id"] for p in flow.http.get("/pets").json()}

    updated = flow.http.put(f"/pets/{cat['id']}", json={"ageMonths": 7, "status": "available"})
    assert updated.status_code == 200
    assert (updated.json()["ageMonths"], updated.json()["status"], updated.json()["name"]) == (7, "available", "Luna")
    assert updated.json()["notes"] == cat["notes"]  # the fields not given are kept
    assert updated.json()["updatedAt"] >= cat["updatedAt"]
    assert flow.http.get(f"/pets/{cat['id']}").json() == updated.json()

    renamed = flow.http.put(f"/pets/{cat['id']}", json={"name": "  Luna Belle "})
    assert renamed.json()["name"] == "Luna Belle"


def test_list_is_most_recently_updated_first_and_an_update_moves_a_pet_to_the_top(flow):
    flow.state.set("pets", "10", stored_pet("10", "Oldest", 1_000))
    flow.state.set("pets", "11", stored_pet("11", "Newest", 3_000))
    flow.state.set("pets", "12", stored_pet("12", "Middle", 2_000))
    assert [p["name"] for p in flow.http.get("/pets").json()] == ["Newest", "Middle", "Oldest"]

    assert flow.http.put("/pets/10", json={"ageMonths": 4}).status_code == 200
    assert [p["name"] for p in flow.http.get("/pets").json()] == ["Oldest", "Newest", "Middle"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "(root)"),
        ({"name": ""}, "name"),
        ({"species": "dragon"}, "species"),
        ({"ageMonths": -3}, "ageMonths"),
        ({"status": "deleted"}, "status"),
    ],
)
def test_invalid_update_is_refused_with_400_and_changes_nothing(flow, body, field):
    pet = create(flow)
    flow.join()
    before = flow.state.get("pets", pet["id"])
    response = flow.http.put(f"/pets/{pet['id']}", json=body)
    assert response.status_code == 400
    assert [f["field"] for f in response.json()["fields"]] == [field]
    assert flow.state.get("pets", pet["id"]) == before


def test_unknown_pet_is_404_everywhere(flow):
    for response in (
        flow.http.get("/pets/999999"),
        flow.http.put("/pets/999999", json={"ageMonths": 1}),
        flow.http.delete("/pets/999999"),
    ):
        assert response.status_code == 404
        assert response.json() == {"error": "Pet not found"}
    assert flow.state.list("pets") == []  # the update did not create it


# -- deleting, and the reaper --------------------------------------------------------------


def test_delete_is_a_soft_delete_with_a_purge_date_30_days_later(flow):
    pet = create(flow, name="Bella")
    flow.join()
    response = flow.http.delete(f"/pets/{pet['id']}")
    assert response.status_code == 202
    answer = response.json()
    assert answer["message"] == "Pet scheduled for deletion" and answer["petId"] == pet["id"]
    assert answer["purgeAt"] - answer["deletedAt"] == 30 * DAY_MS

    stored = flow.state.get("pets", pet["id"])  # still there, for the reaper
    assert (stored["status"], stored["deletedAt"], stored["purgeAt"]) == (
        "deleted",
        answer["deletedAt"],
        answer["purgeAt"],
    )
    assert pet["id"] not in {p["id"] for p in flow.http.get("/pets").json()}
    assert flow.http.get(f"/pets/{pet['id']}").status_code == 404
    assert flow.http.put(f"/pets/{pet['id']}", json={"status": "available"}).status_code == 404
    assert flow.http.delete(f"/pets/{pet['id']}").status_code == 404
    assert flow.state.get("pets", pet["id"])["status"] == "deleted"  # the refused update left it deleted


def test_deletion_reaper_purges_deleted_pets_past_their_purge_date(flow):
    now = int(time.time() * 1000)
    due, later, alive = (create(flow, name=name) for name in ("Due", "Later", "Alive"))
    flow.join()  # the reminder jobs are done before the pets are deleted under them
    for pet, purge_at in ((due, now - 1000), (later, now + DAY_MS)):
        flow.state.update(
            "pets",
            pet["id"],
            {"status": "deleted", "deletedAt": now - 31 * DAY_MS, "purgeAt": purge_at},
        )

    flow.fire("DeletionReaper")  # as the scheduler does, daily at 02:00
    flow.join()

    assert flow.state.get("pets", due["id"]) is None
    assert flow.state.get("pets", later["id"])["status"] == "deleted"  # not due yet
    assert flow.state.get("pets", alive["id"])["status"] == "new"
    [purged] = [line for line in flow.logs if line.message == "Pet permanently purged"]
    assert (purged.step, purged.fields["petId"], purged.fields["name"]) == ("DeletionReaper", due["id"], "Due")
    [done] = [line for line in flow.logs if line.message == "Deletion Reaper completed"]
    assert (done.fields["purgedCount"], done.fields["failedCount"]) == (1, 0)
