"""A real execution service (uvicorn on a loopback port) per test, a tiny checkpoint, and the
request body the tests vary."""

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.loopback import RunningServer, serve_in_thread
from tests.serving.conftest import start_server
from vlarena.execution.app import create_app
from vlarena.execution.settings import ExecutionSettings
from vlarena.policies import PRESETS, FlowVLAPolicy

__all__ = ["start_server"]
StartService = Callable[..., httpx.Client]


def body(**overrides: Any) -> dict[str, Any]:
    """An /execute request body: the expert lifts the red cube (60 steps, seed 3)."""
    request = {
        "model_id": "scripted-expert",
        "robot_id": "franka",
        "scene_id": "table",
        "instruction": "pick up the red cube",
        "seed": 3,
        "max_steps": 60,
    }
    return request | overrides


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "flow-tiny"
    FlowVLAPolicy.create(PRESETS["tiny"], "flow-tiny").save(path)
    return path


@pytest.fixture
def start_service(tiny_checkpoint: Path) -> Iterator[StartService]:
    """Factory: run the service with settings overrides; yields an httpx client bound to it."""
    running: list[tuple[RunningServer, httpx.Client]] = []

    def start(**overrides: Any) -> httpx.Client:
        values: dict[str, Any] = {
            "port": 0,
            "model_paths": str(tiny_checkpoint),
            "presets": "",
            "shipped_models": False,
        }
        server = serve_in_thread(create_app(ExecutionSettings(**(values | overrides))))
        client = httpx.Client(base_url=server.url, timeout=60)
        running.append((server, client))
        return client

    yield start
    for server, client in running:
        client.close()
        server.stop()
