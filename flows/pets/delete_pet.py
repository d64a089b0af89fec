"""DeletePet: DELETE /pets/{id} soft-deletes a pet; DeletionReaper purges it 30 days later."""

from __future__ import annotations

from typing import Any

from conveyor import Context, Request, http, step

from .types import PETS, PURGE_AFTER_MS, Error, PetDeleted, now_ms


@step(
    name="DeletePet",
    description="Soft-deletes a pet and schedules its purge",
    flows=["pets"],
    triggers=[http("DELETE", "/pets/:id", responses={202: PetDeleted, 404: Error})],
)
def handler(request: Request, ctx: Context) -> dict[str, Any]:
    pet_id = request.path_params["id"]
    # One transaction: a purge cannot land between the check and the update (which would
    # recreate a partial pet).
    with ctx.state.transaction():
        current = ctx.state.get(PETS, pet_id)
        if current is None or current.get("status") == "deleted":
            return {"status": 404, "body": {"error": "Pet not found"}}

        deleted_at = now_ms()
        purge_at = deleted_at + PURGE_AFTER_MS
        ctx.state.update(
            PETS,
            pet_id,
            [
                {"type": "set", "path": "status", "value": "deleted"},
                {"type": "set", "path": "deletedAt", "value": deleted_at},
                {"type": "set", "path": "purgeAt", "value": purge_at},
                {"type": "set", "path": "updatedAt", "value": deleted_at},
            ],
        )
    ctx.logger.info("Pet scheduled for deletion", petId=pet_id, purgeAt=purge_at)
    return {
        "status": 202,
        "body": PetDeleted(message="Pet scheduled for deletion", petId=pet_id, deletedAt=deleted_at, purgeAt=purge_at),
    }
