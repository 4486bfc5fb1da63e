"""Python clients of the inference server: blocking (`VLAClient`) and asyncio (`AsyncVLAClient`).

Failures surface as `grpc.RpcError` (sync) / `grpc.aio.AioRpcError` (async) with the server's
status code and message, e.g. INVALID_ARGUMENT for a malformed observation.
"""

import time
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Self

import grpc

from vlarena.serving import codec
from vlarena.serving.v1 import inference_pb2 as pb
from vlarena.serving.v1 import inference_pb2_grpc as pb_grpc
from vlarena.types import ActionChunk, ModelInfo, Observation

DEFAULT_TARGET = "127.0.0.1:50051"


@dataclass(frozen=True)
class Prediction:
    """An action chunk and how the server produced it."""

    chunk: ActionChunk
    queue_time_ms: float  # waiting to be batched on the server
    batch_size: int  # requests in the batch it rode in
    sequence: int  # echo of the request's sequence number
    round_trip_ms: float  # measured by the client (0 for streamed replies)
    feature_version: int = 0  # dual-rate streams: the feature refresh behind this chunk
    feature_age_ms: float = 0.0  # dual-rate streams: age of those features


@dataclass(frozen=True)
class ClientOptions:
    """How to reach and authenticate to the server."""

    target: str = DEFAULT_TARGET  # host:port
    token: str | None = None  # bearer token, if the server requires one
    root_certificates: bytes | None = None  # PEM CA bundle: connect with TLS
    timeout_s: float = 5.0  # default deadline per call
    max_message_mb: int = 16
    jpeg_quality: int | None = None  # send images as JPEG of this quality; None: raw (lossless)

    def channel_args(self) -> list[tuple[str, int]]:
        size = self.max_message_mb * 1024 * 1024
        return [("grpc.max_send_message_length", size), ("grpc.max_receive_message_length", size)]

    def metadata(self) -> tuple[tuple[str, str | bytes], ...]:
        return (("authorization", f"Bearer {self.token}"),) if self.token else ()

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


def _prediction(reply: pb.ActionChunk, round_trip_ms: float = 0.0) -> Prediction:
    return Prediction(
        codec.decode_chunk(reply), reply.queue_time_ms, reply.batch_size, reply.sequence,
        round_trip_ms, reply.feature_version, reply.feature_age_ms,
    )  # fmt: skip


class VLAClient:
    """Blocking client for all four RPCs."""

    def __init__(self, options: ClientOptions | None = None) -> None:
        self.options = options or ClientOptions()
        creds = self.options.credentials()
        args = self.options.channel_args()
        self._channel = (
            grpc.insecure_channel(self.options.target, options=args)
            if creds is None
            else grpc.secure_channel(self.options.target, creds, options=args)
        )
        self._stub = pb_grpc.VLAInferenceStub(self._channel)

    def predict(
        self, obs: Observation, *, model: str = "", seed: int | None = None, sequence: int = 0
    ) -> Prediction:
        started = time.perf_counter()
        reply = self._stub.Predict(
            self.options.request(obs, model, seed, sequence),
            timeout=self.options.timeout_s,
            metadata=self.options.metadata(),
        )
        return _prediction(reply, (time.perf_counter() - started) * 1000.0)

    def stream(
        self, observations: Iterable[Observation], *, model: str = ""
    ) -> Iterator[Prediction]:
        """StreamControl: yields a reply for each observation the server got to (newest wins)."""
        requests = (
            self.options.request(obs, model, None, seq) for seq, obs in enumerate(observations)
        )
        for reply in self._stub.StreamControl(requests, metadata=self.options.metadata()):
            yield _prediction(reply)

    def model_info(self, model: str = "") -> ModelInfo:
        reply = self._stub.GetModelInfo(
            pb.ModelInfoRequest(model=model),
            timeout=self.options.timeout_s,
            metadata=self.options.metadata(),
        )
        return codec.decode_model_info(reply)

    def health(self) -> pb.HealthStatus:
        return self._stub.HealthCheck(
            pb.HealthRequest(), timeout=self.options.timeout_s, metadata=self.options.metadata()
        )

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
        creds = self.options.credentials()
        args = self.options.channel_args()
        self._channel = (
            grpc.aio.insecure_channel(self.options.target, options=args)
            if creds is None
            else grpc.aio.secure_channel(self.options.target, creds, options=args)
        )
        self._stub = pb_grpc.VLAInferenceStub(self._channel)

    async def predict(
        self, obs: Observation, *, model: str = "", seed: int | None = None, sequence: int = 0
    ) -> Prediction:
        started = time.perf_counter()
        reply = await self._stub.Predict(
            self.options.request(obs, model, seed, sequence),
            timeout=self.options.timeout_s,
            metadata=self.options.metadata(),
        )
        return _prediction(reply, (time.perf_counter() - started) * 1000.0)

    async def stream(
        self, observations: AsyncIterable[Observation], *, model: str = "", dual_rate: bool = False
    ) -> AsyncIterator[Prediction]:
        """StreamControl: yields a reply for each observation the server got to (newest wins).

        With `dual_rate`, the server refreshes features in the background and answers at once.
        """

        async def requests() -> AsyncIterator[pb.Observation]:
            seq = 0
            async for obs in observations:
                yield self.options.request(obs, model, None, seq, dual_rate)
                seq += 1

        call = self._stub.StreamControl(requests(), metadata=self.options.metadata())
        async for reply in call:
            yield _prediction(reply)

    async def model_info(self, model: str = "") -> ModelInfo:
        reply = await self._stub.GetModelInfo(
            pb.ModelInfoRequest(model=model),
            timeout=self.options.timeout_s,
            metadata=self.options.metadata(),
        )
        return codec.decode_model_info(reply)

    async def health(self) -> pb.HealthStatus:
        return await self._stub.HealthCheck(
            pb.HealthRequest(), timeout=self.options.timeout_s, metadata=self.options.metadata()
        )

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, *exc: type[BaseException] | BaseException | TracebackType | None
    ) -> None:
        await self.close()
