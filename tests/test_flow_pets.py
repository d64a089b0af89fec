"""The pets flow (seed 003) on a real gateway, RabbitMQ, dramatiq workers and scheduler."""

from __future__ import annotations

import time

import pytest

from tests.flow_support import FlowSystem, flow_system
from tests.system import wait_for

DAY_MS = 24 * 60 * 60 * 1000

# The reaper every second, fired by the real scheduler process.
EXTRA_CONFIG = """
[steps.DeletionReaper]
cron = "* * * * * *"
"""


@pytest.fixture(scope="module")
def pets(rabbitmq, tmp_path_factory):
    with flow_system(rabbitmq, tmp_path_factory.mktemp("pets"), EXTRA_CONFIG, scheduler=True) as system:
        yield system


def create(pets: FlowSystem, **body) -> dict:
    response = pets.http.post("/pets", json={"name": "Max", "species": "dog", "ageMonths": 24, **body})
    assert response.status_code == 201, response.text
    return response.json()


def test_create_pet_answers_201_then_the_background_job_sets_the_feeding_reminder(pets):
    before = int(time.time() * 1000)
    response = pets.http.post("/pets", json={"name": "  Max  ", "species": "dog", "ageMonths": 24})
    assert response.status_code == 201
    pet = response.json()
    assert pet["name"] == "Max"  # trimmed
    assert (pet["species"], pet["ageMonths"], pet["status"]) == ("dog", 24, "new")
    assert before <= pet["createdAt"] == pet["updatedAt"]
    assert response.headers["location"] == f"/pets/{pet['id']}"
    assert "notes" not in pet  # the job fills it in after the answer

    reminded = wait_for(lambda: (p := pets.http.get(f"/pets/{pet['id']}").json()).get("nextFeedingAt") and p)
    assert reminded["notes"] == "Welcome to our pet store! We'll take great care of this pet."
    assert abs(reminded["nextFeedingAt"] - (before + DAY_MS)) < 60_000  # about 24 hours from now
    assert "Next feeding reminder set" in pets.log("workers")


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
def test_invalid_pet_is_refused_with_400(pets, body, fields):
    count = len(pets.state.list("pets"))
    response = pets.http.post("/pets", json=body)
    assert response.status_code == 400
    assert response.json()["error"] == "Invalid request body"
    assert {f["field"] for f in response.json()["fields"]} == fields
    assert len(pets.state.list("pets")) == count


def test_get_list_and_partial_update(pets):
    cat = create(pets, name="Luna", species="cat", ageMonths=6)
    assert pets.http.get(f"/pets/{cat['id']}").json()["name"] == "Luna"
    assert cat["id"] in {p["id"] for p in pets.http.get("/pets").json()}

    updated = pets.http.put(f"/pets/{cat['id']}", json={"ageMonths": 7, "status": "available"})
    assert updated.status_code == 200
    assert (updated.json()["ageMonths"], updated.json()["status"], updated.json()["name"]) == (7, "available", "Luna")
    assert updated.json()["updatedAt"] >= cat["updatedAt"]
    assert pets.http.get("/pets").json()[0]["id"] == cat["id"]  # most recently updated first

    renamed = pets.http.put(f"/pets/{cat['id']}", json={"name": "  Luna Belle "})
    assert renamed.json()["name"] == "Luna Belle"


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
def test_invalid_update_is_refused_with_400(pets, body, field):
    pet = create(pets)
    response = pets.http.put(f"/pets/{pet['id']}", json=body)
    assert response.status_code == 400
    assert [f["field"] for f in response.json()["fields"]] == [field]


def test_unknown_pet_is_404_everywhere(pets):
    for response in (
        pets.http.get("/pets/999999"),
        pets.http.put("/pets/999999", json={"ageMonths": 1}),
        pets.http.delete("/pets/999999"),
    ):
        assert response.status_code == 404
        assert response.json() == {"error": "Pet not found"}


def test_delete_is_a_soft_delete_with_a_purge_date_30_days_later(pets):
    pet = create(pets, name="Bella")
    response = pets.http.delete(f"/pets/{pet['id']}")
    assert response.status_code == 202
    answer = response.json()
    assert answer["message"] == "Pet scheduled for deletion" and answer["petId"] == pet["id"]
    assert answer["purgeAt"] - answer["deletedAt"] == 30 * DAY_MS

    stored = pets.state.get("pets", pet["id"])  # still there, for the reaper
    assert (stored["status"], stored["deletedAt"], stored["purgeAt"]) == (
        "deleted",
        answer["deletedAt"],
        answer["purgeAt"],
    )
    assert pet["id"] not in {p["id"] for p in pets.http.get("/pets").json()}
    assert pets.http.get(f"/pets/{pet['id']}").status_code == 404
    assert pets.http.put(f"/pets/{pet['id']}", json={"status": "available"}).status_code == 404
    assert pets.http.delete(f"/pets/{pet['id']}").status_code == 404


def test_deletion_reaper_purges_deleted_pets_past_their_purge_date(pets):
    now = int(time.time() * 1000)
    due, later, alive = (create(pets, name=name) for name in ("Due", "Later", "Alive"))
    for pet in (due, later, alive):  # let the reminder jobs finish before the pets are deleted under them
        wait_for(lambda pet=pet: pets.state.get("pets", pet["id"]).get("nextFeedingAt"))
    for pet, purge_at in ((due, now - 1000), (later, now + DAY_MS)):
        pets.state.update(
            "pets",
            pet["id"],
            {"status": "deleted", "deletedAt": now - 31 * DAY_MS, "purgeAt": purge_at},
        )

    wait_for(lambda: pets.state.get("pets", due["id"]) is None, timeout=30)
    assert pets.state.get("pets", later["id"])["status"] == "deleted"  # not due yet
    assert pets.state.get("pets", alive["id"])["status"] == "new"
    assert "Fired cron step DeletionReaper" in pets.log("scheduler")
    assert f"Pet permanently purged petId={due['id']}" in pets.log("workers")
