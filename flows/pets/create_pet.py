"""CreatePet: POST /pets stores a new pet and enqueues the job that sets its feeding reminder."""

from __future__ import annotations

from typing import Any

from conveyor import AsyncContext, PublishError, Request, http, step

from .types import PET_IDS, PETS, CreatePetBody, Error, FeedingReminderEnqueued, Pet, now_ms


@step(
    name="CreatePet",
    description="Creates a pet and enqueues its feeding reminder",
    flows=["pets"],
    triggers=[http("POST", "/pets", body=CreatePetBody, responses={201: Pet, 400: Error})],
    enqueues=["pet.feeding.reminder.enqueued"],
)
async def handler(request: Request, ctx: AsyncContext) -> dict[str, Any]:
    body: CreatePetBody = request.body
    # Ids count up from 1, as the seed's store does; the counter is atomic across processes.
    counter = await ctx.state.update(PET_IDS, "next", [{"type": "increment", "path": "value"}])
    pet_id = str(counter["value"])
    created = now_ms()
    pet = Pet(
        id=pet_id,
        name=body.name,
        species=body.species,
        ageMonths=body.ageMonths,
        status="new",
        createdAt=created,
        updatedAt=created,
    )
    await ctx.state.set(PETS, pet_id, pet.model_dump(exclude_none=True))
    ctx.logger.info("Pet created", petId=pet.id, name=pet.name, species=pet.species, status=pet.status)

    try:
        # The background job fills in the reminder; the client has its answer already.
        await ctx.enqueue("pet.feeding.reminder.enqueued", FeedingReminderEnqueued(petId=pet_id, enqueuedAt=now_ms()))
    except PublishError:
        # The client gets a 503 and sends again: do not leave a pet that never gets its reminder.
        await ctx.state.delete(PETS, pet_id)
        raise
    return {"status": 201, "body": pet, "headers": {"location": f"/pets/{pet_id}"}}
