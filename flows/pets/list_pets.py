"""ListPets: GET /pets lists the pets that are not deleted, most recently updated first."""

from __future__ import annotations

from typing import Any

from conveyor import Context, Request, http, step

from .types import PETS, PetList


@step(
    name="ListPets",
    description="Lists pets (soft-deleted pets are hidden)",
    flows=["pets"],
    triggers=[http("GET", "/pets", responses={200: PetList})],
)
def handler(request: Request, ctx: Context) -> dict[str, Any]:
    pets = [pet for pet in ctx.state.list(PETS) if isinstance(pet, dict) and pet.get("status") != "deleted"]
    pets.sort(key=lambda pet: pet.get("updatedAt", 0), reverse=True)
    return {"status": 200, "body": pets}
