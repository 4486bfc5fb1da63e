"""openpi's websocket protocol on its own port, in front of the inference server's batchers:
robots on several connections are batched together, as over gRPC.

Paths: `/` (the default profile and model), `/PROFILE`, `/PROFILE/MODEL`; `GET /healthz`
answers 200 while the server is ready, 503 before and after. With a token set, the handshake
needs `Authorization: Api-Key <token>` (openpi-client's form) or `Bearer <token>`. A frame that
cannot be answered gets one text frame, the JSON error body the HTTP APIs use, then the
connection closes with the code `close_code` gives it.
"""

import dataclasses
import hmac
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from http import HTTPStatus
from typing import Any

import websockets
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from vlarena import __version__
from vlarena.errors import (
    AuthError,
    InvalidRequestError,
    RetryLaterError,
    VLArenaError,
)
from vlarena.httpjson import ErrorBody
from vlarena.policies.base import MAX_SEED
from vlarena.serving.openpi import wire
from vlarena.serving.openpi.profiles import PROFILES, ObservationProfile, get_profile
from vlarena.serving.servicer import InferenceServicer, ServerState
from vlarena.types import ActionChunk, ModelInfo, Observation

log = logging.getLogger(__name__)
# websockets' own connection log: warnings and errors only (the server logs its one
# "listening on" line itself).
_websockets_log = logging.getLogger(f"{__name__}.websockets")
_websockets_log.setLevel(logging.WARNING)
HEALTH_PATH = "/healthz"
CLOSE_REASON_BYTES = 120  # a close frame's reason is at most 123 bytes


def close_code(exc: VLArenaError) -> int:
    """The websocket close code of a domain error, from its catalogue entry."""
    if isinstance(exc, RetryLaterError):
        return 1013  # try again later
    if exc.wire.http_status >= 500:
        return 1011  # the server failed
    return 1008  # policy violation: the client must change what it sends


def error_frame(exc: VLArenaError) -> str:
    """The text frame that reports a failure (openpi-client raises it as a RuntimeError)."""
    return ErrorBody.of(exc).model_dump_json(exclude_none=True)


@dataclass(frozen=True)
class Route:
    """What a connection's path chose."""

    profile: ObservationProfile
    model: str  # "" for the server's default


def model_info_fields(info: ModelInfo) -> dict[str, Any]:
    """A contract as msgpack-able metadata (tuples as lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(info).items()}


class WebsocketListener:
    """One websocket server sharing the gRPC servicer's models, batchers and metrics."""

    def __init__(
        self,
        servicer: InferenceServicer,
        state: ServerState,
        default_profile: str,
        token: str | None,
        max_message_bytes: int,
    ) -> None:
        self._servicer = servicer
        self._state = state
        self._default_profile = get_profile(default_profile)
        self._tokens = (
            [f"{scheme} {token}".encode() for scheme in ("Api-Key", "Bearer")] if token else []
        )
        self._max_message_bytes = max_message_bytes
        self._server: Server | None = None
        self.port = 0

    async def start(self, host: str, port: int) -> None:
        self._server = await serve(
            self._session,
            host,
            port,
            process_request=self._check_request,
            max_size=self._max_message_bytes,
            compression=None,  # no permessage-deflate: a small frame cannot inflate to a huge one
            server_header=f"vlarena/{__version__}",
            logger=_websockets_log,
        )
        self.port = next(iter(self._server.sockets)).getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def route(self, path: str) -> Route:
        """The profile and model a path names (UnknownNameError listing the valid ones)."""
        parts = [p for p in path.split("?", 1)[0].split("/") if p]
        if len(parts) > 2:
            raise InvalidRequestError("a path is /, /PROFILE or /PROFILE/MODEL")
        profile = get_profile(parts[0]) if parts else self._default_profile
        model = parts[1] if len(parts) == 2 else ""
        self._servicer.model(model)  # an unknown model lists the served ones
        return Route(profile, model)

    def _check_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """Health, credentials and the path, before the handshake completes."""
        if request.path.split("?", 1)[0] == HEALTH_PATH:
            ready = self._state.ready
            status = HTTPStatus.OK if ready else HTTPStatus.SERVICE_UNAVAILABLE
            return _json(status, {"status": self._state.status})
        try:
            self._authenticate(request.headers)
            self.route(request.path)
        except VLArenaError as exc:
            return _json(HTTPStatus(exc.wire.http_status), ErrorBody.of(exc).model_dump())
        return None

    def _authenticate(self, headers: Headers) -> None:
        if not self._tokens:
            return
        given = headers.get("Authorization", "").encode()
        if not any(hmac.compare_digest(given, expected) for expected in self._tokens):
            raise AuthError("missing or invalid token (Authorization: Api-Key <token>)")

    def metadata(self, route: Route) -> dict[str, Any]:
        """What a connection receives first: the model's contract and how to talk to it."""
        info = self._servicer.model(route.model).policy.info
        return {
            "server": "vlarena",
            "version": __version__,
            "profile": route.profile.name,
            "profiles": sorted(PROFILES),
            "models": self._servicer.model_names,
            "model_info": model_info_fields(info),
            "cameras": list(route.profile.cameras(info)),
        }

    async def _session(self, connection: ServerConnection) -> None:
        assert connection.request is not None  # the handshake is done
        route = self.route(connection.request.path)
        try:
            await connection.send(wire.packb(self.metadata(route)))
            async for frame in connection:
                received = time.perf_counter()
                try:
                    chunk = await self._servicer.counted(
                        route.model, partial(self._answer, route, frame, received)
                    )
                except VLArenaError as exc:
                    await connection.send(error_frame(exc))
                    reason = str(exc).encode()[:CLOSE_REASON_BYTES].decode(errors="ignore")
                    await connection.close(close_code(exc), reason)
                    return
                await connection.send(wire.packb(reply(chunk)))
        except websockets.ConnectionClosed:
            return  # the client went away; nothing is owed to it

    async def _answer(self, route: Route, frame: str | bytes, received: float) -> ActionChunk:
        if isinstance(frame, str):
            raise InvalidRequestError("frames must be binary msgpack, not text")

        def decode(info: ModelInfo) -> tuple[Observation, int | None]:
            message = wire.unpackb(frame)
            return route.profile.decode(message, info), _seed(message)

        deadline = self._servicer.deadline_after(None)
        return await self._servicer.infer(route.model, decode, deadline, received)


def reply(chunk: ActionChunk) -> dict[str, Any]:
    """A chunk as the reply dict: `actions` plus `server_timing`, as openpi's servers answer."""
    timing = chunk.timing_ms
    return {
        "actions": chunk.actions,
        "model_id": chunk.model_id,
        "batch_size": chunk.batch_size,
        "server_timing": {
            "infer_ms": timing["policy"],
            "queue_ms": timing["queue"],
            "server_ms": timing["server"],
        },
    }


def _seed(message: Mapping[Any, Any]) -> int | None:
    """The optional `seed` key (our extension to every profile): a reproducible chunk."""
    seed = message.get("seed")
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise InvalidRequestError(f"seed must be an integer in 0..{MAX_SEED}")
    return seed


def _json(status: HTTPStatus, body: Mapping[str, Any]) -> Response:
    data = json.dumps(body).encode()
    headers = Headers([("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return Response(status.value, status.phrase, headers, data)
