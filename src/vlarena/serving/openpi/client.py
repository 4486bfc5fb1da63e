"""Any server that speaks openpi's websocket protocol as a `Policy`: openpi's `serve_policy.py`,
a RoboArena-style policy server, or `vlarena serve` with VLA_WEBSOCKET_PORT.

The contract comes from the server's metadata when it states one (`model_info`, as ours does);
a server that does not is taken to drive the simulated Panda (`assumed_contract`). Failures keep
the catalogue's kinds: our server's JSON error frames decode to the error it raised; a foreign
server's text frame, a malformed reply or wrong-sized actions are a PolicyOutputError; a dead or
closed connection is an UnavailableError (retryable); no reply in time a DeadlineExceededError.
"""

import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import pydantic
import websockets
from websockets.sync.client import ClientConnection, connect

from vlarena.errors import (
    ConfigError,
    DeadlineExceededError,
    InvalidRequestError,
    PolicyOutputError,
    UnavailableError,
    VLArenaError,
    clip,
    echo,
    remote_failure,
)
from vlarena.httpjson import ErrorBody
from vlarena.policies.base import Policy, Seeds
from vlarena.serving.openpi import wire
from vlarena.serving.openpi.profiles import get_profile
from vlarena.sim.controllers import ACTION_DIM, STATE_DIM
from vlarena.sim.world import CAMERAS
from vlarena.types import ActionChunk, ModelInfo, Observation

ASSUMED_IMAGE_PX = 224  # what openpi's example clients send (its models resize to this)
ASSUMED_CHUNK = 10  # openpi's LIBERO action horizon; the reply's actions decide
_INFO = pydantic.TypeAdapter(ModelInfo)


@dataclass(frozen=True)
class OpenPIOptions:
    """How to reach an openpi-protocol server."""

    url: str  # ws://HOST:PORT[/PATH] or wss://...
    profile: str | None = None  # observation profile; None: the server's stated one, else native
    token: str | None = None  # sent as `Authorization: Api-Key <token>`, as openpi-client does
    timeout_s: float = 10.0  # to connect, and to wait for each reply
    max_message_mb: int = 16  # the largest frame accepted from the server


def assumed_contract(name: str) -> ModelInfo:
    """The contract of a server whose metadata states none: the simulated Panda's (7 joint
    targets and the gripper; 9 joints; its two cameras) at openpi's 224x224."""
    return ModelInfo(
        name=name,
        version="unknown",
        policy_type="openpi-remote",
        action_dim=ACTION_DIM,
        chunk_size=ASSUMED_CHUNK,
        camera_names=CAMERAS,
        image_height=ASSUMED_IMAGE_PX,
        image_width=ASSUMED_IMAGE_PX,
        state_dim=STATE_DIM,
    )


class OpenPIPolicy(Policy):
    """One websocket connection to an openpi-protocol server; one round trip per observation."""

    def __init__(self, options: OpenPIOptions) -> None:
        self.options = options
        self._lock = threading.Lock()  # one request on the connection at a time
        self._ws: ClientConnection | None = None
        metadata = self._connect()
        self._ours = metadata.get("server") == "vlarena"  # knows our extensions (seeds)
        stated = metadata.get("profile")
        self.profile = get_profile(self.options.profile or stated or "native")
        if stated is not None and stated != self.profile.name:
            self.close()
            raise ConfigError(
                f"the server at {self._address} reads profile {echo(stated)}, not "
                f"{self.profile.name!r} (a vlarena server takes it from the path: /PROFILE)"
            )
        self._info = self._contract(metadata)

    @property
    def info(self) -> ModelInfo:
        return self._info

    def predict(
        self, observations: Sequence[Observation], seeds: Seeds = None
    ) -> list[ActionChunk]:
        return [
            self._predict(obs, seed)
            for obs, seed in zip(observations, seeds or [None] * len(observations), strict=True)
        ]

    def close(self) -> None:
        with self._lock:
            self._drop()

    def _predict(self, obs: Observation, seed: int | None) -> ActionChunk:
        message = self.profile.encode(obs)
        if self._ours and seed is not None:
            message["seed"] = seed
        started = time.perf_counter()
        with self._lock, self._failures():
            if self._ws is None:
                self._connect()
            assert self._ws is not None
            self._ws.send(wire.packb(message))
            reply = self._receive()
        actions = self._actions(reply)
        elapsed_ms = (time.perf_counter() - started) * 1000.0
        return ActionChunk(actions, self._info.name, timing_ms={"policy": elapsed_ms})

    def _connect(self) -> dict[Any, Any]:
        """Open the connection and read the server's metadata."""
        headers = {"Authorization": f"Api-Key {self.options.token}"} if self.options.token else None
        with self._failures():
            self._ws = connect(
                self.options.url,
                additional_headers=headers,
                compression=None,
                open_timeout=self.options.timeout_s,
                max_size=self.options.max_message_mb * 1024 * 1024,
            )
            return self._receive()

    def _receive(self) -> dict[Any, Any]:
        assert self._ws is not None
        frame = self._ws.recv(timeout=self.options.timeout_s)
        if isinstance(frame, str):
            raise _error(frame)
        try:
            return wire.unpackb(frame)
        except InvalidRequestError as exc:
            raise PolicyOutputError(f"unreadable reply: {exc}") from None

    def _contract(self, metadata: dict[Any, Any]) -> ModelInfo:
        stated = metadata.get("model_info")
        if stated is None:
            return assumed_contract(self._address)
        try:
            return _INFO.validate_python(stated)
        except (pydantic.ValidationError, VLArenaError) as exc:
            raise PolicyOutputError(
                f"the server at {self._address} states an invalid contract: {clip(str(exc), 300)}"
            ) from None

    def _actions(self, reply: dict[Any, Any]) -> np.ndarray[Any, Any]:
        actions = reply.get("actions")
        if isinstance(actions, np.ndarray) and actions.ndim == 1:
            actions = actions[None, :]
        dim = self._info.action_dim
        if (
            not isinstance(actions, np.ndarray)
            or actions.ndim != 2
            or actions.shape[0] == 0
            or actions.shape[1] != dim
        ):
            shape = getattr(actions, "shape", type(actions).__name__)
            raise PolicyOutputError(
                f"the server at {self._address} answered actions {echo(shape)}, not Hx{dim}"
            )
        return actions.astype(np.float32)

    @property
    def _address(self) -> str:
        return self.options.url.split("#", 1)[0]

    def _drop(self) -> None:
        if self._ws is not None:
            self._ws.close()
            self._ws = None

    @contextmanager
    def _failures(self) -> Iterator[None]:
        """Any failure drops the connection (the next call opens a new one) and is raised as
        the catalogue's error."""
        try:
            yield
        except BaseException as exc:
            self._drop()
            raise _domain_error(exc, self._address) from None


def _error(text: str) -> VLArenaError:
    """A server's text frame: our JSON error body, else a foreign server's own message."""
    try:
        return ErrorBody.model_validate_json(text).to_error()
    except pydantic.ValidationError:
        return PolicyOutputError(f"the openpi server failed: {clip(text, 300)}")


def _domain_error(exc: BaseException, address: str) -> BaseException:
    if isinstance(exc, PolicyOutputError):  # says already what the server did wrong
        return exc
    if isinstance(exc, VLArenaError):
        return remote_failure(exc, f"the openpi server at {address}")
    if isinstance(exc, websockets.InvalidStatus):
        body = exc.response.body or b""
        try:
            return ErrorBody.model_validate_json(body).to_error(exc.response.status_code)
        except pydantic.ValidationError:
            return UnavailableError(f"{address} refused the connection: {exc}")
    if isinstance(exc, TimeoutError):
        return DeadlineExceededError(f"{address} did not answer in time")
    if isinstance(exc, websockets.ConnectionClosed):
        return UnavailableError(f"the connection to {address} closed ({exc})")
    if isinstance(exc, OSError | websockets.InvalidHandshake | websockets.InvalidURI):
        return UnavailableError(f"{address} is unreachable: {exc}")
    return exc
