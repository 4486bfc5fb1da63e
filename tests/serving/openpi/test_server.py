"""The websocket listener, driven by the unmodified openpi-client package over loopback."""

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np
import pytest
import websockets
from openpi_client import msgpack_numpy
from openpi_client.websocket_client_policy import WebsocketClientPolicy
from websockets.sync.client import connect

from tests.serving.conftest import StartServer
from vlarena.serving.server import InferenceServer

TOKEN = "s3cret-token"


def libero_observation(size: int = 224) -> dict[str, Any]:
    """What openpi's LIBERO example client sends (images at its 224x224)."""
    rng = np.random.default_rng(0)
    return {
        "observation/image": rng.integers(0, 255, (size, size, 3), dtype=np.uint8),
        "observation/wrist_image": rng.integers(0, 255, (size, size, 3), dtype=np.uint8),
        "observation/state": np.zeros(9, np.float32),
        "prompt": "lift the red cube",
    }


def native_observation(info: dict[str, Any], seed: int | None = None) -> dict[str, Any]:
    size = (info["image_height"], info["image_width"], 3)
    message: dict[str, Any] = {
        "images": {c: np.zeros(size, np.uint8) for c in info["camera_names"]},
        "joint_positions": np.zeros(info["state_dim"], np.float32),
        "joint_velocities": np.zeros(info["state_dim"], np.float32),
        "language_instruction": "touch the red cube",
    }
    return message | ({"seed": seed} if seed is not None else {})


@pytest.fixture
async def ws_server(start_server: StartServer) -> InferenceServer:
    server: InferenceServer = await start_server(
        websocket_port=0, batch_size=8, max_queue_delay_ms=20, max_message_size_mb=1
    )
    return server


def url(server: InferenceServer, path: str = "") -> str:
    return f"ws://127.0.0.1:{server.websocket_port}{path}"


async def test_openpi_client_drives_each_profile(ws_server: InferenceServer) -> None:
    def drive() -> None:
        native = WebsocketClientPolicy("127.0.0.1", ws_server.websocket_port)
        metadata = native.get_server_metadata()
        assert metadata["profile"] == "native"
        assert metadata["models"] == ["ar-tiny", "flow-tiny"]
        info = metadata["model_info"]
        assert info["name"] == "flow-tiny"
        assert info["action_dim"] == 8
        reply = native.infer(native_observation(info, seed=3))
        assert reply["actions"].shape == (info["chunk_size"], 8)
        assert set(reply["server_timing"]) == {"infer_ms", "queue_ms", "server_ms"}
        again = native.infer(native_observation(info, seed=3))
        np.testing.assert_array_equal(reply["actions"], again["actions"])  # seeded: reproducible

        libero = WebsocketClientPolicy(url(ws_server, "/libero/ar-tiny"))
        assert libero.get_server_metadata()["model_info"]["name"] == "ar-tiny"
        assert libero.infer(libero_observation())["model_id"] == "ar-tiny"

        droid = WebsocketClientPolicy(url(ws_server, "/droid"))
        reply = droid.infer(
            {
                "observation/exterior_image_1_left": np.zeros((224, 224, 3), np.uint8),
                "observation/wrist_image_left": np.zeros((224, 224, 3), np.uint8),
                "observation/joint_position": np.zeros(7),
                "observation/gripper_position": np.array([1.0]),
                "prompt": "push the blue cube to the left",
            }
        )
        assert reply["actions"].shape[1] == 8

    await asyncio.to_thread(drive)


async def test_eight_robots_are_batched_together(ws_server: InferenceServer) -> None:
    sizes: list[int] = []
    barrier = threading.Barrier(8)

    def robot() -> None:
        policy = WebsocketClientPolicy(url(ws_server, "/libero"))
        for _ in range(3):
            barrier.wait(timeout=30)
            sizes.append(policy.infer(libero_observation(32))["batch_size"])

    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(8) as pool:  # one thread per robot (the default pool is smaller)
        await asyncio.gather(*(loop.run_in_executor(pool, robot) for _ in range(8)))
    assert len(sizes) == 24
    assert max(sizes) > 1


async def test_health_answers_while_ready(start_server: StartServer) -> None:
    server = await start_server(wait_ready=False, websocket_port=0)
    async with httpx.AsyncClient() as http:
        health = f"http://127.0.0.1:{server.websocket_port}/healthz"
        assert (await http.get(health)).status_code in (200, 503)
        await server.wait_ready()
        reply = await http.get(health)
        assert reply.status_code == 200
        assert reply.json() == {"status": "SERVING"}
        await server.stop(grace_s=0)
    assert server.state.status == "DRAINING"


async def test_token_auth_accepts_openpi_clients_api_key(start_server: StartServer) -> None:
    server = await start_server(websocket_port=0, auth_token=TOKEN)

    def check() -> None:
        policy = WebsocketClientPolicy(url(server, "/libero"), api_key=TOKEN)
        assert policy.infer(libero_observation())["actions"].shape[1] == 8
        with pytest.raises(websockets.InvalidStatus) as refused:
            WebsocketClientPolicy(url(server), api_key="wrong")
        assert refused.value.response.status_code == 401
        assert b'"error":"unauthorized"' in refused.value.response.body.replace(b" ", b"")
        with pytest.raises(websockets.InvalidStatus):
            WebsocketClientPolicy(url(server))
        headers = {"Authorization": f"Bearer {TOKEN}"}
        with connect(url(server), additional_headers=headers) as bearer:
            assert msgpack_numpy.unpackb(bearer.recv())["server"] == "vlarena"

    await asyncio.to_thread(check)
    async with httpx.AsyncClient() as http:  # health needs no token
        assert (await http.get(f"http://127.0.0.1:{server.websocket_port}/healthz")).is_success


@pytest.mark.parametrize(
    ("frame", "code", "error"),
    [
        (b"\xc1 not msgpack", 1008, "invalid_request"),
        ("a text frame", 1008, "invalid_request"),
        (msgpack_numpy.packb({"prompt": "no images"}), 1008, "invalid_request"),
        (msgpack_numpy.packb(libero_observation() | {"seed": -1}), 1008, "invalid_request"),
    ],
)
async def test_bad_frames_get_an_error_and_a_close_code(
    ws_server: InferenceServer, frame: bytes | str, code: int, error: str
) -> None:
    def send() -> None:
        with connect(url(ws_server, "/libero")) as ws:
            ws.recv()  # metadata
            ws.send(frame)
            reply = ws.recv()
            assert isinstance(reply, str)
            assert f'"error":"{error}"' in reply
            assert "Traceback" not in reply
            with pytest.raises(websockets.ConnectionClosed) as closed:
                ws.recv()
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == code
        # and the server serves the next robot as before
        assert WebsocketClientPolicy(url(ws_server, "/libero")).infer(libero_observation())

    await asyncio.to_thread(send)


async def test_size_limit_and_unknown_paths(ws_server: InferenceServer) -> None:
    def send() -> None:
        with connect(url(ws_server, "/libero"), max_size=None) as ws:
            ws.recv()
            ws.send(b"\0" * (2 * 1024 * 1024))  # the server's limit is 1 MiB
            with pytest.raises(websockets.ConnectionClosed) as closed:
                ws.recv()
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 1009
        for path, listed in (("/aloha", b"droid, libero, native"), ("/libero/nope", b"ar-tiny")):
            with pytest.raises(websockets.InvalidStatus) as refused:
                connect(url(ws_server, path))
            assert refused.value.response.status_code == 404
            assert listed in refused.value.response.body

    await asyncio.to_thread(send)
