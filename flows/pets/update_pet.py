"""UpdatePet: PUT /pets/{id} changes the fields given (name, species, ageMonths, status)."""

from __future__ import annotations

from typing import Any

from conveyor import Context, Request, http, step

from .types import PETS, Error, Pet, UpdatePetBody, now_ms


@step(
    name="UpdatePet",
    description="Partially updates a pet",
    flows=["pets"],
    triggers=[http("PUT", "/pets/:id", body=UpdatePetBody, responses={200: Pet, 400: Error, 404: Error})],
)
def handler(request: Request, ctx: Context) -> dict[str, Any]:
    pet_id = request.path_params["id"]
    body: UpdatePetBody = request.body
    # One transaction: a purge cannot land between the check and the update (which would
    # recreate a partial pet).
    with ctx.state.transaction():
        current = ctx.state.get(PETS, pet_id)
        if current is None or current.get("status") == "deleted":
            return {"status": 404, "body": {"error": "Pet not found"}}

        changes = body.model_dump(exclude_none=True)
        ops = [{"type": "set", "path": field, "value": value} for field, value in changes.items()]
        ops.append({"type": "set", "path": "updatedAt", "value": now_ms()})
        pet = ctx.state.update(PETS, pet_id, ops)
    ctx.logger.info("Pet updated", petId=pet_id, fields=sorted(changes))
    return {"status": 200, "body": pet}
