"""A real inference server on loopback with tiny native policies, per test."""

import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import grpc
import pytest

from vlarena.policies import PRESETS, AutoregressiveVLAPolicy, FlowVLAPolicy, Policy
from vlarena.serving.client import AsyncVLAClient, ClientOptions
from vlarena.serving.server import InferenceServer
from vlarena.serving.settings import ServerSettings
from vlarena.serving.v1 import inference_pb2_grpc as pb_grpc

StartServer = Callable[..., Any]


def tiny_policies() -> list[Any]:
    return [
        FlowVLAPolicy.create(PRESETS["tiny"], "flow-tiny", seed=0),
        AutoregressiveVLAPolicy.create(PRESETS["tiny"], "ar-tiny", seed=0),
    ]


@pytest.fixture
async def start_server() -> AsyncIterator[StartServer]:
    """Factory: start a server (ephemeral ports) with settings overrides; stopped at teardown."""
    servers: list[InferenceServer] = []

    async def start(
        wait_ready: bool = True, policies: list[Policy] | None = None, **overrides: Any
    ) -> InferenceServer:
        values: dict[str, Any] = {"grpc_port": 0, "metrics_port": 0, "drain_timeout_s": 2.0}
        settings = ServerSettings(**(values | overrides))
        server = InferenceServer(settings, policies=policies or tiny_policies())
        servers.append(server)
        await server.start()
        if wait_ready:
            await server.wait_ready()
        return server

    yield start
    for server in servers:
        await server.stop(grace_s=0)


@pytest.fixture
async def server(start_server: StartServer) -> InferenceServer:
    return await start_server(batch_size=4, max_queue_delay_ms=5)  # type: ignore[no-any-return]


@pytest.fixture
async def client(server: InferenceServer) -> AsyncIterator[AsyncVLAClient]:
    async with AsyncVLAClient(ClientOptions(target=f"127.0.0.1:{server.port}")) as c:
        yield c


@pytest.fixture
def raw_stub() -> Callable[[InferenceServer], pb_grpc.VLAInferenceStub]:
    def make(server: InferenceServer) -> pb_grpc.VLAInferenceStub:
        return pb_grpc.VLAInferenceStub(grpc.aio.insecure_channel(f"127.0.0.1:{server.port}"))

    return make


@contextmanager
def blocked(server: InferenceServer) -> Iterator[threading.Event]:
    """Occupy the server's single inference worker until the block is released."""
    release = threading.Event()
    server.inference_pool.submit(release.wait, 30)
    try:
        yield release
    finally:
        release.set()
