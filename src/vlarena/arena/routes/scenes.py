"""The scenes a battle may use and their files (MJCF, meshes) for the browser replay."""

from typing import Annotated, Any

from fastapi import APIRouter, Path, Response

from vlarena.arena.deps import ERRORS, Services
from vlarena.arena.schemas import SceneOut

router = APIRouter(prefix="/api/scenes", tags=["scenes"])
SceneId = Annotated[str, Path(max_length=50)]


@router.get("", response_model=list[SceneOut])
async def scenes(services: Services) -> list[SceneOut]:
    """The scenes a battle may use, with example instructions."""
    return await services.scenes.listed()


@router.get("/{scene_id}/manifest", responses=ERRORS)
async def manifest(scene_id: SceneId, services: Services) -> dict[str, Any]:
    """The scene's MJCF and meshes (from the execution service) for the browser replay."""
    return await services.scenes.manifest(scene_id)


@router.get("/{scene_id}/files/{path:path}", responses=ERRORS)
async def scene_file(scene_id: SceneId, path: str, services: Services) -> Response:
    content = await services.scenes.file(scene_id, path)
    headers = {"Cache-Control": "public, max-age=3600"}
    return Response(content, media_type="application/octet-stream", headers=headers)
