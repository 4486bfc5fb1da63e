"""The files a browser needs to rebuild a scene (its MJCF and the robot's meshes), and their
manifest with sizes and sha256 hashes. Only listed files are ever served."""

import hashlib
from pathlib import Path
from typing import Any

from vlarena.errors import UnknownNameError
from vlarena.sim import SCENES

ASSETS = next(iter(SCENES.values())).parent


def scene_files(scene_id: str) -> list[Path]:
    """Every file of the scene, its MJCF first; UnknownNameError for an unknown scene."""
    if scene_id not in SCENES:
        raise UnknownNameError("scene", scene_id, SCENES)
    robot = sorted(p for p in (ASSETS / "franka").rglob("*") if p.is_file())
    return [SCENES[scene_id], *robot]


def relative(path: Path) -> str:
    """A file's name in manifests and URLs: its path under the assets folder."""
    return path.relative_to(ASSETS).as_posix()


def manifest(scene_id: str) -> dict[str, Any]:
    """The scene's files with their sizes, hashes and URLs; `root` is the MJCF to load."""
    files = [
        {
            "path": relative(p),
            "size": p.stat().st_size,
            "sha256": hashlib.sha256(p.read_bytes()).hexdigest(),
            "url": f"/scenes/{scene_id}/files/{relative(p)}",
        }
        for p in scene_files(scene_id)
    ]
    return {"scene_id": scene_id, "root": files[0]["path"], "files": files}


def scene_file(scene_id: str, path: str) -> Path:
    """The listed file of the scene at `path`; UnknownNameError for anything not listed (a
    whitelist: no requested path reaches the filesystem unchecked)."""
    allowed = {relative(p): p for p in scene_files(scene_id)}
    if path not in allowed:
        raise UnknownNameError("file", path, [])
    return allowed[path]
