"""What the routes share: the episode service of the running app, and the error bodies their
OpenAPI entries document."""

from typing import Annotated, Any

from fastapi import Depends, Request

from vlarena.execution.episodes import EpisodeService
from vlarena.httpjson import ErrorBody


async def get_service(request: Request) -> EpisodeService:
    service: EpisodeService = request.app.state.service
    return service


Service = Annotated[EpisodeService, Depends(get_service)]
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (404, 413, 422, 500, 502, 503, 504)
}
