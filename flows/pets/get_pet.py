"""GetPet: GET /pets/{id} returns a pet; deleted pets are not found."""

from __future__ import annotations

from typing import Any

from conveyor import Context, Request, http, step

from .types import PETS, Error, Pet


@step(
    name="GetPet",
    description="Returns one pet",
    flows=["pets"],
    triggers=[http("GET", "/pets/:id", responses={200: Pet, 404: Error})],
)
def handler(request: Request, ctx: Context) -> dict[str, Any]:
    pet = ctx.state.get(PETS, request.path_params["id"])
    if pet is None or pet.get("status") == "deleted":
        return {"status": 404, "body": {"error": "Pet not found"}}
    return {"status": 200, "body": pet}
