"""HandleFailedOrders: keeps food orders that failed for good for manual review and alerts an administrator.

It reads the dead-letter topic ``failed-orders``, which ProcessFoodOrder's messages reach after
their retries are used up (``dead_letter_queue`` in config.toml).
"""

from __future__ import annotations

from conveyor import Context, queue, step

from .types import FAILED_ORDERS, FOOD_ORDERS, AdminAlert, FailedFoodOrder


@step(
    name="HandleFailedOrders",
    description="Process orders that failed after max retries",
    flows=["food-orders"],
    triggers=[queue("failed-orders", input=FailedFoodOrder)],
    enqueues=["alert-admin"],
)
def handler(failed: FailedFoodOrder, ctx: Context) -> None:
    ctx.logger.error("Order permanently failed", orderId=failed.orderId, error=failed.error)

    review = failed.model_dump(mode="json", exclude={"deadLetter"}, exclude_none=True)
    review["attempts"] = failed.deadLetter.attempts if failed.deadLetter else None
    review["needsManualReview"] = True
    ctx.state.set(FAILED_ORDERS, failed.orderId, review)

    # ProcessFoodOrder may have stored the order before it failed: do not leave it looking "placed".
    if ctx.state.get(FOOD_ORDERS, failed.orderId) is not None:
        ctx.state.update(FOOD_ORDERS, failed.orderId, {"status": "failed", "failureReason": failed.error})

    ctx.enqueue(
        "alert-admin",
        AdminAlert(type="order-failure", orderId=failed.orderId, customerEmail=failed.email, error=failed.error),
    )
