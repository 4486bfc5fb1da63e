"""OpenPIPolicy: our websocket endpoint, and an independent minimal openpi-protocol server."""

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
from openpi_client import msgpack_numpy
from websockets.sync.server import ServerConnection, serve

from tests.serving.conftest import StartServer
from tests.serving.openpi.test_profiles import observation
from vlarena.errors import (
    AuthError,
    ConfigError,
    DeadlineExceededError,
    InvalidRequestError,
    PolicyOutputError,
    UnavailableError,
    UnknownNameError,
)
from vlarena.policies.specs import parse_spec
from vlarena.serving import remote
from vlarena.serving.openpi.client import ASSUMED_IMAGE_PX, OpenPIOptions, OpenPIPolicy

Answer = Callable[[dict[str, Any]], bytes | str]


@contextmanager
def openpi_server(answer: Answer, metadata: dict[str, Any] | None = None) -> Iterator[str]:
    """A minimal openpi-protocol server, written from the protocol (not from our code): sends
    its metadata, then answers each msgpack observation with whatever `answer` makes of it."""

    def session(ws: ServerConnection) -> None:
        ws.send(msgpack_numpy.packb(metadata or {}))
        for frame in ws:
            assert isinstance(frame, bytes)
            ws.send(answer(msgpack_numpy.unpackb(frame)))

    with serve(session, "127.0.0.1", 0) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        yield f"ws://127.0.0.1:{server.socket.getsockname()[1]}"
        server.shutdown()


def chunk_of(dim: int) -> Answer:
    def answer(obs: dict[str, Any]) -> bytes:
        assert obs["prompt"] == "touch the red cube"
        assert obs["observation/image"].shape == (ASSUMED_IMAGE_PX, ASSUMED_IMAGE_PX, 3)
        return msgpack_numpy.packb({"actions": np.full((5, dim), 0.25), "policy_timing": {}})

    return answer


def assumed_observation() -> Any:
    """An observation at the size a server that states no contract is assumed to take."""
    obs = observation()
    images = {c: np.zeros((ASSUMED_IMAGE_PX, ASSUMED_IMAGE_PX, 3), np.uint8) for c in obs.images}
    return type(obs)(images, obs.state, obs.instruction)


def test_a_foreign_openpi_server_is_a_policy() -> None:
    with openpi_server(chunk_of(8)) as url:
        policy = remote.connect(parse_spec(f"{url}#libero"))
        assert policy.info.action_dim == 8
        assert policy.info.camera_names == ("front", "wrist")
        (chunk,) = policy.predict([assumed_observation()])
        assert chunk.actions.shape == (5, 8)
        assert chunk.actions[0, 0] == pytest.approx(0.25)
        assert set(chunk.timing_ms) == {"policy"}
        policy.close()


def test_foreign_failures_are_the_catalogues() -> None:
    with openpi_server(chunk_of(7)) as url:  # 7-dim actions: not the Panda's 8
        policy = OpenPIPolicy(OpenPIOptions(url, "libero"))
        with pytest.raises(PolicyOutputError, match=r"\(5, 7\)"):
            policy.predict([assumed_observation()])
    with openpi_server(lambda obs: "Traceback (most recent call last): boom") as url:
        policy = OpenPIPolicy(OpenPIOptions(url, "libero"))
        with pytest.raises(PolicyOutputError, match="openpi server failed: Traceback"):
            policy.predict([assumed_observation()])
    with openpi_server(lambda obs: time.sleep(2) or b"") as url:
        policy = OpenPIPolicy(OpenPIOptions(url, "libero", timeout_s=0.3))
        with pytest.raises(DeadlineExceededError):
            policy.predict([assumed_observation()])
    with (
        openpi_server(chunk_of(8), metadata={"model_info": {"name": "x"}}) as url,
        pytest.raises(PolicyOutputError, match="invalid contract"),
    ):
        OpenPIPolicy(OpenPIOptions(url))
    with pytest.raises(UnavailableError, match="unreachable"):
        OpenPIPolicy(OpenPIOptions(url, timeout_s=1))  # the server is gone


async def test_our_endpoint_through_the_client_matches_grpc(start_server: StartServer) -> None:
    server = await start_server(websocket_port=0, auth_token="t0ken")
    ws_url = f"ws://127.0.0.1:{server.websocket_port}"

    def check() -> None:
        obs = observation()
        grpc_policy = remote.connect(parse_spec(f"grpc://127.0.0.1:{server.port}/ar-tiny"), "t0ken")
        for profile in ("native", "libero"):
            spec = parse_spec(f"{ws_url}/{profile}/ar-tiny")
            policy = remote.connect(spec, token="t0ken")
            assert policy.info == grpc_policy.info
            (ws_chunk,) = policy.predict([obs], [7])
            (grpc_chunk,) = grpc_policy.predict([obs], [7])
            if profile == "native":  # the same observation and seed: the same chunk
                np.testing.assert_array_equal(ws_chunk.actions, grpc_chunk.actions)
            one_camera = type(obs)({"front": obs.images["front"]}, obs.state, obs.instruction)
            with pytest.raises(InvalidRequestError, match=r"cameras|wrist_image"):  # the server's
                policy.predict([one_camera])
            assert policy.predict([obs])[0].model_id == "ar-tiny"  # reconnected after the close
            policy.close()
        grpc_policy.close()
        with pytest.raises(ConfigError, match="reads profile 'native', not 'libero'"):
            remote.connect(parse_spec(f"{ws_url}#libero"), token="t0ken")
        with pytest.raises(AuthError):
            remote.connect(parse_spec(ws_url), token="wrong")
        with pytest.raises(UnknownNameError, match="flow-tiny"):
            remote.connect(parse_spec(f"{ws_url}/native/nope"), token="t0ken")

    await asyncio.to_thread(check)


@pytest.mark.parametrize("spec", ["ws://host", "ws://:80/x", "wss://host:99999", "ws://h:x/"])
def test_bad_openpi_specs_are_refused(spec: str) -> None:
    with pytest.raises(ValueError, match="must be ws://HOST:PORT"):
        parse_spec(spec)
