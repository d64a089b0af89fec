"""DeletionReaper: every day at 02:00, permanently removes soft-deleted pets whose purge date has passed."""

from __future__ import annotations

from conveyor import Context, cron, step

from .types import PETS, now_ms


@step(
    name="DeletionReaper",
    description="Daily job that permanently removes pets scheduled for deletion",
    flows=["pets"],
    triggers=[cron("0 2 * * *")],  # daily at 2:00 AM
)
def handler(_: None, ctx: Context) -> None:
    ctx.logger.info("Deletion Reaper started - scanning for pets to purge")
    now = now_ms()
    due = [
        (key, pet)
        for key, pet in ctx.state.items(PETS)
        if isinstance(pet, dict) and pet.get("status") == "deleted" and _number(pet.get("purgeAt"), now + 1) <= now
    ]
    if not due:
        ctx.logger.info("Deletion Reaper completed - no pets to purge")
        return

    purged = 0
    for key, pet in due:
        if ctx.state.delete(PETS, key) is not None:
            purged += 1
            ctx.logger.info(
                "Pet permanently purged",
                petId=key,
                name=pet.get("name"),
                deletedAt=pet.get("deletedAt"),
                purgeAt=pet.get("purgeAt"),
            )
        else:
            ctx.logger.warning("Pet was already gone", petId=key)
    ctx.logger.info(
        "Deletion Reaper completed", totalScanned=len(due), purgedCount=purged, failedCount=len(due) - purged
    )


def _number(value: object, default: int) -> int | float:
    return value if isinstance(value, int | float) and not isinstance(value, bool) else default
