"""Schemas and rules shared by the pets steps.

Times are milliseconds since the epoch, as the seed's ``Date.now()`` gives them.
"""

from __future__ import annotations

import time
from typing import Annotated, Literal

from pydantic import BaseModel, Field, RootModel, StringConstraints, model_validator

#: Pets by id.
PETS = "pets"
#: Holds the counter pet ids are drawn from.
PET_IDS = "pet-ids"

DAY_MS = 24 * 60 * 60 * 1000
#: A soft-deleted pet is purged this long after its deletion.
PURGE_AFTER_MS = 30 * DAY_MS
#: The next feeding is set this long after the pet is created.
FEEDING_INTERVAL_MS = DAY_MS
WELCOME_NOTES = "Welcome to our pet store! We'll take great care of this pet."

Species = Literal["dog", "cat", "bird", "other"]
#: Statuses a client may set with PUT; "deleted" only comes from DELETE.
SettableStatus = Literal["new", "available", "pending", "adopted"]
PetStatus = Literal["new", "available", "pending", "adopted", "deleted"]

#: Trimmed, then at least one character.
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
#: A whole number of months, 0 or more; 2.5, "3" and true are refused.
AgeMonths = Annotated[int, Field(ge=0, strict=True)]


def now_ms() -> int:
    """Milliseconds since the epoch, like ``Date.now()``."""
    return int(time.time() * 1000)


class CreatePetBody(BaseModel):
    """The body of ``POST /pets``."""

    name: Name
    species: Species
    ageMonths: AgeMonths


class UpdatePetBody(BaseModel):
    """The body of ``PUT /pets/{id}``: any of the fields, at least one."""

    name: Name | None = None
    species: Species | None = None
    ageMonths: AgeMonths | None = None
    status: SettableStatus | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> UpdatePetBody:
        if all(value is None for _, value in self):
            raise ValueError("At least one field must be provided for update")
        return self


class Pet(BaseModel):
    """A pet as stored in ``pets/<id>`` and returned by the API."""

    id: str
    name: str
    species: Species
    ageMonths: int
    status: PetStatus
    createdAt: int
    updatedAt: int
    notes: str | None = None
    nextFeedingAt: int | None = None
    deletedAt: int | None = None
    purgeAt: int | None = None


class PetList(RootModel[list[Pet]]):
    """What ``GET /pets`` answers."""


class FeedingReminderEnqueued(BaseModel):
    """What topic ``pet.feeding.reminder.enqueued`` carries."""

    petId: str
    enqueuedAt: int


class PetDeleted(BaseModel):
    message: str
    petId: str
    deletedAt: int
    purgeAt: int


class Error(BaseModel):
    error: str
