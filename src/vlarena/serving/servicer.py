"""The VLAInference gRPC service: decode and validate at the edge, batch, answer."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import grpc

from vlarena.errors import (
    InvalidObservationError,
    InvalidRequestError,
    NonFiniteActionsError,
    UnavailableError,
    UnknownNameError,
    VLArenaError,
)
from vlarena.policies import Policy
from vlarena.runtime import DualRateConfig, DualRateRuntime, DynamicBatcher
from vlarena.serving import codec
from vlarena.serving.metrics import ServerMetrics
from vlarena.serving.status import abort
from vlarena.serving.v1 import inference_pb2 as pb
from vlarena.serving.v1 import inference_pb2_grpc as pb_grpc
from vlarena.types import ActionChunk, ModelInfo, Observation, check_name_length

log = logging.getLogger(__name__)
T = TypeVar("T")
# Decodes a request against the model it names: the observation and its noise seed.
Decode = Callable[[ModelInfo], tuple[Observation, int | None]]
UNKNOWN_LABEL = "unknown"  # the metric label of requests for a model this server does not serve


@dataclass
class ServedModel:
    """A loaded policy and the batcher in front of it."""

    policy: Policy
    batcher: DynamicBatcher


@dataclass(frozen=True)
class Pools:
    """The threads the service hands work to."""

    decode: Executor  # request decoding (JPEG) off the event loop
    inference: Executor  # the device's single inference worker
    features: Executor  # dual-rate streams' background feature refreshes


@dataclass
class ServerState:
    """What health reports: STARTING → SERVING → DRAINING (FAILED if the warm-up fails)."""

    status: str = "STARTING"
    started: float = 0.0

    @property
    def ready(self) -> bool:
        return self.status == "SERVING"


class InferenceServicer(pb_grpc.VLAInferenceServicer):
    """Predict, StreamControl, GetModelInfo and HealthCheck over the served models."""

    def __init__(
        self,
        models: dict[str, ServedModel],
        default_model: str,
        state: ServerState,
        metrics: ServerMetrics,
        pools: Pools,
        timeout_s: float,
        device: str,
        precision: str,
        dual_rate: DualRateConfig,
    ) -> None:
        self._models = models
        self._default = default_model
        self._state = state
        self._metrics = metrics
        self._pools = pools
        self._dual_rate = dual_rate
        self._timeout_s = timeout_s
        self._device = device
        self._precision = precision

    def _label(self, name: str) -> str:
        """Metric label of a requested model: client-chosen unknown names share one label."""
        name = name or self._default
        return name if name in self._models else UNKNOWN_LABEL

    @property
    def model_names(self) -> list[str]:
        return sorted(self._models)

    def model(self, name: str) -> ServedModel:
        """A served model by name ("" for the default); UnknownNameError lists the served ones."""
        check_name_length("model", name)
        try:
            return self._models[name or self._default]
        except KeyError:
            raise UnknownNameError("model", name, self._models) from None

    def refused(self) -> None:
        """Count a request that could not be parsed (so names no model)."""
        self._metrics.requests.labels(UNKNOWN_LABEL, InvalidRequestError.wire.grpc_code).inc()

    async def counted(self, model: str, call: Callable[[], Awaitable[T]]) -> T:
        """Run `call`, counting its outcome under the model it names (any transport); an
        unexpected exception is logged and raised as an opaque internal error."""
        label = self._label(model)
        try:
            result = await call()
        except VLArenaError as exc:
            self._metrics.requests.labels(label, exc.wire.grpc_code).inc()
            if isinstance(exc, NonFiniteActionsError):  # a model fault: the operator must know
                self._metrics.nonfinite_actions.labels(label).inc()
                log.error("%s", exc)
            raise
        except asyncio.CancelledError:
            self._metrics.requests.labels(label, "CANCELLED").inc()
            raise
        except Exception as exc:
            log.exception("unexpected error serving %s", label)
            internal = VLArenaError("internal error (see the server log)")
            self._metrics.requests.labels(label, internal.wire.grpc_code).inc()
            raise internal from exc
        self._metrics.requests.labels(label, "OK").inc()
        return result

    async def _guard(
        self,
        context: grpc.aio.ServicerContext[Any, Any],
        model: str,
        call: Callable[[], Awaitable[T]],
    ) -> T:
        """Run `call` counted; a failure aborts the call with its error's status."""
        try:
            return await self.counted(model, call)
        except VLArenaError as exc:
            await abort(context, exc)

    def _deadline(self, context: grpc.aio.ServicerContext[Any, Any]) -> float:
        """Event-loop time by which the answer is due: the client's deadline or VLA_TIMEOUT_MS."""
        return self.deadline_after(context.time_remaining())

    def _ready_model(self, name: str) -> ServedModel:
        if not self._state.ready:
            raise UnavailableError(f"server is {self._state.status.lower()}, not serving")
        return self.model(name)

    def deadline_after(self, budget_s: float | None) -> float:
        """Event-loop time by which an answer is due: `budget_s` (None: none) or VLA_TIMEOUT_MS."""
        budget = self._timeout_s if budget_s is None else min(budget_s, self._timeout_s)
        return asyncio.get_running_loop().time() + budget

    async def _decode(self, served: ServedModel, request: pb.Observation) -> Observation:
        """The request's observation, decoded and checked against the model it names."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._pools.decode, codec.decode_observation, request, served.policy.info
        )

    async def infer(
        self, model: str, decode: Decode, deadline: float, received: float
    ) -> ActionChunk:
        """One observation through the named model's batcher, the step every transport shares:
        `decode` runs on the decode threads once a queue place is taken (so overload is refused
        before any work); the chunk comes back timed up to the server layer."""
        served = self._ready_model(model)
        info = served.policy.info
        with served.batcher.admit() as place:
            loop = asyncio.get_running_loop()
            obs, seed = await loop.run_in_executor(self._pools.decode, decode, info)
            chunk = await place.submit(obs, seed, deadline)
        queue_s = chunk.timing_ms["queue"] / 1000.0
        self._metrics.queue_time.labels(info.name).observe(queue_s)
        self._metrics.latency.labels(info.name, obs.embodiment).observe(
            queue_s + chunk.timing_ms["policy"] / 1000.0
        )
        return chunk.timed("server", _elapsed_ms(received))

    async def _predict(self, request: pb.Observation, deadline: float) -> pb.ActionChunk:
        received = time.perf_counter()

        def decode(info: ModelInfo) -> tuple[Observation, int | None]:
            return codec.decode_observation(request, info), _seed(request)

        chunk = await self.infer(request.model, decode, deadline, received)
        return codec.encode_chunk(chunk, request)

    async def Predict(  # noqa: N802 (gRPC method name)
        self, request: pb.Observation, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ActionChunk:
        deadline = self._deadline(context)
        return await self._guard(context, request.model, lambda: self._predict(request, deadline))

    async def StreamControl(  # noqa: N802
        self,
        request_iterator: AsyncIterator[pb.Observation],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[pb.ActionChunk]:
        """Answer the newest observation each time the model is free; older waiting ones drop."""
        latest: list[pb.Observation] = []  # at most one: the newest unanswered observation
        arrived = asyncio.Event()
        finished = False
        mode: str | None = None  # set by the first observation: "batched" or "dual"
        dual: list[DualRateRuntime] = []  # this stream's dual-rate runtime, once created

        async def read() -> None:
            nonlocal finished
            try:
                async for observation in request_iterator:
                    if latest:
                        latest.clear()
                        self._metrics.stream_dropped.inc()
                    latest.append(observation)
                    arrived.set()
            finally:
                finished = True
                arrived.set()

        reader = asyncio.create_task(read())
        try:
            while True:
                while not latest and not finished:
                    arrived.clear()
                    await arrived.wait()
                if not latest:
                    break
                request = latest.pop()
                deadline = self._deadline(context)
                if mode is None:
                    mode = "dual" if request.dual_rate else "batched"
                if mode == "dual":
                    call = partial(self._predict_dual, dual, request, deadline)
                else:
                    call = partial(self._predict, request, deadline)
                yield await self._guard(context, request.model, call)
            error = await asyncio.gather(reader, return_exceptions=True)
            if isinstance(error[0], Exception):
                log.warning("stream message could not be read: %r", error[0])
                await abort(context, InvalidRequestError("malformed stream message"))
        finally:
            reader.cancel()
            for runtime in dual:
                runtime.close()

    async def _predict_dual(
        self, dual: list[DualRateRuntime], request: pb.Observation, deadline: float
    ) -> pb.ActionChunk:
        """Answer at once from this stream's newest features, refreshing them in the background."""
        received = time.perf_counter()
        served = self._ready_model(request.model)
        obs = await self._decode(served, request)
        if not dual:
            dual.append(
                DualRateRuntime(served.policy, self._dual_rate, executor=self._pools.features)
            )
        runtime = dual[0]
        if runtime.policy is not served.policy:
            raise InvalidObservationError("a dual-rate stream serves one model; open another")
        loop = asyncio.get_running_loop()
        out = await runtime.astep(
            obs.state, lambda: obs, _seed(request), self._pools.inference, deadline - loop.time()
        )
        assert out.chunk is not None  # cold start "wait" (the default) always yields a chunk
        name = served.policy.info.name
        if out.refreshed:
            self._metrics.refreshes.labels(name).inc()
        self._metrics.feature_age.labels(name).observe(out.chunk.feature_age_ms / 1000.0)
        policy_ms = out.chunk.timing_ms.get("policy", 0.0)  # a policy may not time itself
        self._metrics.compute_time.labels(name).observe(policy_ms / 1000.0)
        return codec.encode_chunk(out.chunk.timed("server", _elapsed_ms(received)), request)

    async def GetModelInfo(  # noqa: N802
        self, request: pb.ModelInfoRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ModelInfo:
        async def info() -> pb.ModelInfo:
            policy = self.model(request.model).policy
            return codec.encode_model_info(
                policy.info, self._device, self._precision, sorted(self._models)
            )

        return await self._guard(context, request.model, info)

    async def HealthCheck(  # noqa: N802
        self, request: pb.HealthRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.HealthStatus:
        depth = sum(m.batcher.depth for m in self._models.values())
        return pb.HealthStatus(
            ready=self._state.ready,
            status=self._state.status,
            gpu_utilization=self._metrics.gpu_utilization_percent(),
            has_gpu=self._metrics.gpu is not None,
            queue_depth=depth,
            uptime_seconds=time.monotonic() - self._state.started,
            models=sorted(self._models),
        )


def _seed(request: pb.Observation) -> int | None:
    return request.seed if request.HasField("seed") else None


def _elapsed_ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0
