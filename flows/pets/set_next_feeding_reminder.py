"""SetNextFeedingReminder: the background job CreatePet enqueues; adds welcome notes and the next feeding time."""

from __future__ import annotations

from conveyor import Context, queue, step

from .types import FEEDING_INTERVAL_MS, PETS, WELCOME_NOTES, FeedingReminderEnqueued, now_ms


@step(
    name="SetNextFeedingReminder",
    description="Background job that sets next feeding reminder and adds welcome notes",
    flows=["pets"],
    triggers=[queue("pet.feeding.reminder.enqueued", input=FeedingReminderEnqueued)],
)
def handler(event: FeedingReminderEnqueued, ctx: Context) -> None:
    ctx.logger.info("Setting next feeding reminder", petId=event.petId, enqueuedAt=event.enqueuedAt)
    # One transaction: a purge cannot land between the check and the update (which would
    # recreate a partial pet).
    with ctx.state.transaction():
        pet = ctx.state.get(PETS, event.petId)
        if pet is None or pet.get("status") == "deleted":
            # Nothing to remind about; retrying would not bring the pet back.
            ctx.logger.error("Failed to set feeding reminder - pet not found", petId=event.petId)
            return

        next_feeding_at = now_ms() + FEEDING_INTERVAL_MS
        ctx.state.update(
            PETS,
            event.petId,
            [
                {"type": "set", "path": "notes", "value": WELCOME_NOTES},
                {"type": "set", "path": "nextFeedingAt", "value": next_feeding_at},
                {"type": "set", "path": "updatedAt", "value": now_ms()},
            ],
        )
    ctx.logger.info("Next feeding reminder set", petId=event.petId, nextFeedingAt=next_feeding_at)
