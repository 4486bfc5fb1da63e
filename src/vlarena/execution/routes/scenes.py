"""`GET /scenes` and each scene's manifest and files, for a browser-side rebuild."""

from typing import Any

from fastapi import APIRouter
from fastapi.responses import FileResponse

from vlarena.execution import assets
from vlarena.execution.routes.deps import ERRORS
from vlarena.sim import ROBOTS, SCENES
from vlarena.sim.tasks import scene_examples
from vlarena.sim.world import CAMERAS

router = APIRouter(prefix="/scenes")


@router.get("")
async def scenes() -> list[dict[str, Any]]:
    return [
        {
            "scene_id": s,
            "robot_ids": list(ROBOTS),
            "cameras": list(CAMERAS),
            "manifest_url": f"/scenes/{s}/manifest",
            "examples": scene_examples(s),
        }
        for s in SCENES
    ]


@router.get("/{scene_id}/manifest", responses=ERRORS)
async def manifest(scene_id: str) -> dict[str, Any]:
    """The scene's MJCF and meshes, with sizes and hashes, for a browser-side rebuild."""
    return assets.manifest(scene_id)


@router.get("/{scene_id}/files/{path:path}", responses=ERRORS)
async def scene_file(scene_id: str, path: str) -> FileResponse:
    return FileResponse(assets.scene_file(scene_id, path))
