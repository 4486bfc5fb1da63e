"""A real execution service (uvicorn on a loopback port) per test, and a tiny checkpoint."""

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from tests.serving.conftest import start_server
from vlarena.execution.app import create_app
from vlarena.execution.settings import ExecutionSettings
from vlarena.policies import PRESETS, FlowVLAPolicy

__all__ = ["start_server"]
StartService = Callable[..., httpx.Client]


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "flow-tiny"
    FlowVLAPolicy.create(PRESETS["tiny"], "flow-tiny").save(path)
    return path


@pytest.fixture
def start_service(tiny_checkpoint: Path) -> Iterator[StartService]:
    """Factory: run the service with settings overrides; yields an httpx client bound to it."""
    running: list[tuple[uvicorn.Server, threading.Thread, httpx.Client]] = []

    def start(**overrides: Any) -> httpx.Client:
        values: dict[str, Any] = {
            "port": 0,
            "model_paths": str(tiny_checkpoint),
            "presets": "",
            "shipped_models": False,
        }
        app = create_app(ExecutionSettings(**(values | overrides)))
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        for _ in range(500):
            if server.started:
                break
            time.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
        running.append((server, thread, client))
        return client

    yield start
    for server, thread, client in running:
        client.close()
        server.should_exit = True
        thread.join(timeout=10)
