"""Python clients of the inference server: blocking (`VLAClient`), asyncio (`AsyncVLAClient`),
and `RemotePolicy`, a served model as a `Policy`.

A failed call raises the domain error the server raised (`vlarena.errors`), decoded from its
status and trailing metadata: e.g. InvalidObservationError for a malformed observation,
QueueFullError (retryable) when the server is overloaded.
"""

import json
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Self, TypedDict

import grpc

from vlarena.errors import (
    VLArenaError,
    remote_failure,
)
from vlarena.policies.base import Policy, Seeds
from vlarena.policies.specs import ModelSpec
from vlarena.serving import codec
from vlarena.serving.status import from_rpc_error
from vlarena.serving.v1 import inference_pb2 as pb
from vlarena.serving.v1 import inference_pb2_grpc as pb_grpc
from vlarena.types import ActionChunk, ModelInfo, Observation

DEFAULT_TARGET = "127.0.0.1:50051"


@contextmanager
def _domain_errors() -> Iterator[None]:
    """Failed calls raise the domain error behind them, not grpc.RpcError."""
    try:
        yield
    except grpc.RpcError as exc:
        raise from_rpc_error(exc) from None


def _elapsed_ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0


ROUND_ROBIN = json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})


class UnaryKwargs(TypedDict):
    timeout: float
    metadata: tuple[tuple[str, str | bytes], ...]


@dataclass(frozen=True)
class ClientOptions:
    """How to reach and authenticate to the server."""

    # host:port, or any gRPC target: `ipv4:HOST:PORT,HOST:PORT` lists replicas and
    # `dns:///NAME:PORT` takes every address a name resolves to (a headless Service)
    target: str = DEFAULT_TARGET
    token: str | None = None  # bearer token, if the server requires one
    root_certificates: bytes | None = None  # PEM CA bundle: connect with TLS
    timeout_s: float = 5.0  # default deadline per call
    max_message_mb: int = 16
    jpeg_quality: int | None = None  # send images as JPEG of this quality; None: raw (lossless)

    def channel_args(self) -> list[tuple[str, int | str]]:
        """Message size limits, and round robin over every address of the target (calls of one
        channel spread over a model's replicas, not pinned to the first connection)."""
        size = self.max_message_mb * 1024 * 1024
        return [
            ("grpc.max_send_message_length", size),
            ("grpc.max_receive_message_length", size),
            ("grpc.service_config", ROUND_ROBIN),
        ]

    def metadata(self) -> tuple[tuple[str, str | bytes], ...]:
        return (("authorization", f"Bearer {self.token}"),) if self.token else ()

    def unary(self) -> "UnaryKwargs":
        """The keyword arguments of a unary call: its deadline and credentials."""
        return {"timeout": self.timeout_s, "metadata": self.metadata()}

    def credentials(self) -> grpc.ChannelCredentials | None:
        if self.root_certificates is None:
            return None
        return grpc.ssl_channel_credentials(root_certificates=self.root_certificates)

    def request(
        self, obs: Observation, model: str, seed: int | None, seq: int, dual_rate: bool = False
    ) -> pb.Observation:
        msg = codec.encode_observation(
            obs, model=model, seed=seed, sequence=seq, jpeg_quality=self.jpeg_quality
        )
        msg.dual_rate = dual_rate
        return msg


class VLAClient:
    """Blocking client for all four RPCs."""

    def __init__(self, options: ClientOptions | None = None) -> None:
        self.options = options or ClientOptions()
        creds, args = self.options.credentials(), self.options.channel_args()
        self._channel = (
            grpc.insecure_channel(self.options.target, options=args)
            if creds is None
            else grpc.secure_channel(self.options.target, creds, options=args)
        )
        self._stub = pb_grpc.VLAInferenceStub(self._channel)

    def predict(
        self, obs: Observation, *, model: str = "", seed: int | None = None, sequence: int = 0
    ) -> ActionChunk:
        """One observation's chunk, with the server's timings and this call's round trip."""
        request = self.options.request(obs, model, seed, sequence)
        started = time.perf_counter()
        with _domain_errors():
            reply = self._stub.Predict(request, **self.options.unary())
        return codec.decode_chunk(reply).timed("round_trip", _elapsed_ms(started))

    def stream(
        self, observations: Iterable[Observation], *, model: str = ""
    ) -> Iterator[ActionChunk]:
        """StreamControl: yields a reply for each observation the server got to (newest wins)."""
        requests = (
            self.options.request(obs, model, None, seq) for seq, obs in enumerate(observations)
        )
        with _domain_errors():
            for reply in self._stub.StreamControl(requests, metadata=self.options.metadata()):
                yield codec.decode_chunk(reply)

    def model_info(self, model: str = "") -> ModelInfo:
        with _domain_errors():
            reply = self._stub.GetModelInfo(
                pb.ModelInfoRequest(model=model), **self.options.unary()
            )
        return codec.decode_model_info(reply)

    def health(self) -> pb.HealthStatus:
        with _domain_errors():
            return self._stub.HealthCheck(pb.HealthRequest(), **self.options.unary())

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()


class AsyncVLAClient:
    """asyncio client for all four RPCs."""

    def __init__(self, options: ClientOptions | None = None) -> None:
        self.options = options or ClientOptions()
        creds, args = self.options.credentials(), self.options.channel_args()
        self._channel = (
            grpc.aio.insecure_channel(self.options.target, options=args)
            if creds is None
            else grpc.aio.secure_channel(self.options.target, creds, options=args)
        )
        self._stub = pb_grpc.VLAInferenceStub(self._channel)

    async def predict(
        self, obs: Observation, *, model: str = "", seed: int | None = None, sequence: int = 0
    ) -> ActionChunk:
        """One observation's chunk, with the server's timings and this call's round trip."""
        request = self.options.request(obs, model, seed, sequence)
        started = time.perf_counter()
        with _domain_errors():
            reply = await self._stub.Predict(request, **self.options.unary())
        return codec.decode_chunk(reply).timed("round_trip", _elapsed_ms(started))

    async def stream(
        self, observations: AsyncIterable[Observation], *, model: str = "", dual_rate: bool = False
    ) -> AsyncIterator[ActionChunk]:
        """StreamControl: yields a reply for each observation the server got to (newest wins).

        With `dual_rate`, the server refreshes features in the background and answers at once.
        """

        async def requests() -> AsyncIterator[pb.Observation]:
            seq = 0
            async for obs in observations:
                yield self.options.request(obs, model, None, seq, dual_rate)
                seq += 1

        with _domain_errors():
            async for reply in self._stub.StreamControl(
                requests(), metadata=self.options.metadata()
            ):
                yield codec.decode_chunk(reply)

    async def model_info(self, model: str = "") -> ModelInfo:
        with _domain_errors():
            request = pb.ModelInfoRequest(model=model)
            reply = await self._stub.GetModelInfo(request, **self.options.unary())
        return codec.decode_model_info(reply)

    async def health(self) -> pb.HealthStatus:
        with _domain_errors():
            return await self._stub.HealthCheck(pb.HealthRequest(), **self.options.unary())

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, *exc: type[BaseException] | BaseException | TracebackType | None
    ) -> None:
        await self.close()


class RemotePolicy(Policy):
    """A model of an inference server as a policy: one Predict call per observation.

    The server's failures are this policy's: request errors and retryable ones keep their
    kind, anything else is a PolicyOutputError naming the server.
    """

    def __init__(self, client: VLAClient, model: str = "", owns_client: bool = False) -> None:
        self._client = client
        self._model = model
        self._owns_client = owns_client  # close() closes the channel (it is this policy's own)
        with self._failures():
            self._info = client.model_info(model)

    @classmethod
    def connect(cls, spec: ModelSpec, options: ClientOptions) -> "RemotePolicy":
        """A remote spec (`grpc://HOST:PORT[/MODEL]`) as a policy, over a channel of its own."""
        return cls(VLAClient(replace(options, target=spec.source)), spec.model, owns_client=True)

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    @property
    def info(self) -> ModelInfo:
        return self._info

    def predict(
        self, observations: Sequence[Observation], seeds: Seeds = None
    ) -> list[ActionChunk]:
        with self._failures():
            chunks = [
                self._client.predict(obs, model=self._model, seed=seed)
                for obs, seed in zip(observations, seeds or [None] * len(observations), strict=True)
            ]
        # To its caller this policy's call took the whole round trip; the server's own layers
        # stay on the server's side of the seam.
        return [replace(c, timing_ms={"policy": c.timing_ms["round_trip"]}) for c in chunks]

    @contextmanager
    def _failures(self) -> Iterator[None]:
        try:
            yield
        except VLArenaError as exc:
            failure = remote_failure(exc, "the inference server")
            if failure is exc:
                raise
            raise failure from exc
