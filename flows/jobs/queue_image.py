"""QueueImage: POST /images puts an image and its operations on the image queue."""

from __future__ import annotations

from typing import Any

from conveyor import AsyncContext, PublishError, Request, http, now_iso, step

from .types import IMAGES, Error, Image, ImageJob


@step(
    name="QueueImage",
    description="Enqueues an image for processing",
    flows=["job-queues"],
    triggers=[http("POST", "/images", body=ImageJob, responses={202: Image, 400: Error})],
    enqueues=["image.process"],
)
async def handler(request: Request, ctx: AsyncContext) -> dict[str, Any]:
    job: ImageJob = request.body
    image = {"imageId": job.imageId, "operations": job.operations, "status": "queued", "queuedAt": now_iso()}
    await ctx.state.set(IMAGES, job.imageId, image)
    try:
        await ctx.enqueue("image.process", job)
    except PublishError:
        await ctx.state.delete(IMAGES, job.imageId)  # the client gets a 503 and sends again
        raise
    ctx.logger.info("Image queued", imageId=job.imageId, operations=job.operations)
    return {"status": 202, "body": image, "headers": {"location": f"/images/{job.imageId}"}}
