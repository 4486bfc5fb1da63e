"""Simulated worlds, kept per worker thread: building a scene is slow, and MuJoCo's rendering
context belongs to the thread that made it."""

import threading

from vlarena.sim import FrankaWorld


class WorldCache:
    """One `FrankaWorld` per scene and per thread, built on first use and reused after."""

    def __init__(self) -> None:
        self._local = threading.local()

    def get(self, scene_id: str) -> FrankaWorld:
        """The calling thread's world of this scene (blocking the first time: it builds it)."""
        worlds: dict[str, FrankaWorld] = self._local.__dict__.setdefault("scenes", {})
        if scene_id not in worlds:
            worlds[scene_id] = FrankaWorld(scene_id)
        return worlds[scene_id]
