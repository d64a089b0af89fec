"""ProcessImage: the image queue's worker. Applies (here: records) each operation in order."""

from __future__ import annotations

from conveyor import Context, now_iso, queue, step

from .types import IMAGES, ImageJob


@step(
    name="ProcessImage",
    description="Processes queued images",
    flows=["job-queues"],
    triggers=[queue("image.process", input=ImageJob)],
)
def handler(job: ImageJob, ctx: Context) -> None:
    applied = []
    for operation in job.operations:
        # A real system runs the operation here (Pillow, libvips, an image service).
        applied.append({"operation": operation, "appliedAt": now_iso()})
        ctx.logger.info("Operation applied", imageId=job.imageId, operation=operation)
    ctx.state.update(
        IMAGES,
        job.imageId,
        {"status": "processed", "operationsApplied": applied, "processedAt": now_iso(), "attempts": ctx.attempt},
    )
    ctx.logger.info("Image processed", imageId=job.imageId, operations=len(applied))
