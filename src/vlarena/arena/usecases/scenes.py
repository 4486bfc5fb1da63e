"""Scenes a battle may use, and their files for the browser replay (from the execution service)."""

import json
from typing import Any

from vlarena.arena.client import ExecutionClient
from vlarena.arena.schemas import SceneOut
from vlarena.errors import UnknownNameError


class Scenes:
    def __init__(self, client: ExecutionClient, scene_ids: tuple[str, ...]) -> None:
        self.client = client
        self.scene_ids = scene_ids

    async def listed(self) -> list[SceneOut]:
        """The configured scenes the service runs, with example instructions."""
        return [
            SceneOut(
                scene_id=scene["scene_id"],
                examples=scene.get("examples", []),
                manifest_url=f"/api/scenes/{scene['scene_id']}/manifest",
            )
            for scene in await self.client.scenes()
            if scene["scene_id"] in self.scene_ids
        ]

    async def manifest(self, scene_id: str) -> dict[str, Any]:
        """The scene's MJCF and meshes, each with the arena URL that serves it."""
        if scene_id not in self.scene_ids:
            raise UnknownNameError("scene", scene_id, self.scene_ids)
        raw = await self.client.scene_file(f"/scenes/{scene_id}/manifest")
        manifest: dict[str, Any] = json.loads(raw)
        for entry in manifest["files"]:
            entry["url"] = f"/api/scenes/{scene_id}/files/{entry['path']}"
        return manifest

    async def file(self, scene_id: str, path: str) -> bytes:
        listed = {entry["path"] for entry in (await self.manifest(scene_id))["files"]}
        if path not in listed:  # a whitelist: only the manifest's files are fetched
            raise UnknownNameError("scene file", path, [])
        return await self.client.scene_file(f"/scenes/{scene_id}/files/{path}")
