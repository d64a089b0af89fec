"""AlertAdmin: raises (here: logs and records) an alert for administrators."""

from __future__ import annotations

from conveyor import Context, now_iso, queue, step

from .types import ADMIN_ALERTS, AdminAlert


@step(
    name="AlertAdmin",
    description="Alerts administrators about orders that need a person",
    flows=["food-orders"],
    triggers=[queue("alert-admin", input=AdminAlert)],
)
def handler(alert: AdminAlert, ctx: Context) -> None:
    alert_id = f"alert-{ctx.message_id}"
    ctx.state.set(ADMIN_ALERTS, alert_id, {"id": alert_id, **alert.model_dump(mode="json"), "raisedAt": now_iso()})
    # A real system pages someone here (email, Slack, PagerDuty).
    ctx.logger.error("ADMIN ALERT", alertType=alert.type, orderId=alert.orderId, error=alert.error)
