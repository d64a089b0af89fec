"""GetImage: GET /images/{imageId} returns an image's processing status and the operations applied."""

from __future__ import annotations

from typing import Any

from conveyor import Context, Request, http, step

from .types import IMAGES, Error, Image


@step(
    name="GetImage",
    description="Returns an image's processing status",
    flows=["job-queues"],
    triggers=[http("GET", "/images/:imageId", responses={200: Image, 404: Error})],
)
def handler(request: Request, ctx: Context) -> dict[str, Any]:
    image = ctx.state.get(IMAGES, request.path_params["imageId"])
    if image is None:
        return {"status": 404, "body": {"error": "Image not found"}}
    return {"status": 200, "body": image}
