"""The inference server over real loopback gRPC: every RPC, batching, overload and failure."""

import asyncio
import io
import subprocess
import urllib.request
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from PIL import Image

from tests.serving.conftest import StartServer, blocked
from vlarena.errors import (
    AuthError,
    DeadlineExceededError,
    PolicyOutputError,
    QueueFullError,
    UnavailableError,
)
from vlarena.policies import Policy, Seeds
from vlarena.policies.synthetic import synthetic_observation
from vlarena.serving import codec
from vlarena.serving.client import AsyncVLAClient, ClientOptions, RemotePolicy, VLAClient
from vlarena.serving.server import InferenceServer
from vlarena.serving.v1 import inference_pb2 as pb
from vlarena.serving.v1 import inference_pb2_grpc as pb_grpc
from vlarena.types import ActionChunk, ModelInfo, Observation

Stub = Callable[[InferenceServer], pb_grpc.VLAInferenceStub]


def obs_for(server: InferenceServer, model: str = "flow-tiny", seed: int = 0) -> Observation:
    return synthetic_observation(server.models[model].policy.info, seed=seed)


def metrics_text(server: InferenceServer) -> str:
    url = f"http://127.0.0.1:{server.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


def metric_value(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


async def wait_until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    for _ in range(int(timeout_s / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


async def test_predict_matches_in_process_policy(
    server: InferenceServer, client: AsyncVLAClient
) -> None:
    obs = obs_for(server)
    reply = await client.predict(obs, seed=3, sequence=41)
    local = server.models["flow-tiny"].policy.predict([obs], seeds=[3])[0]
    np.testing.assert_allclose(reply.actions, local.actions, atol=1e-5)
    assert reply.sequence == 41
    assert reply.model_id == "flow-tiny"
    assert reply.confidence is None
    assert reply.timing_ms["round_trip"] > reply.timing_ms["server"] > reply.timing_ms["policy"] > 0
    assert set(reply.timing_ms) == {"policy", "queue", "server", "round_trip"}
    ar = await client.predict(obs, model="ar-tiny")
    assert ar.model_id == "ar-tiny"
    assert ar.confidence is not None


async def test_jpeg_images_are_accepted(server: InferenceServer) -> None:
    options = ClientOptions(target=f"127.0.0.1:{server.port}", jpeg_quality=95)
    async with AsyncVLAClient(options) as jpeg_client:
        reply = await jpeg_client.predict(obs_for(server), seed=0)
    assert reply.actions.shape == (4, 8)


async def test_model_info_and_health(server: InferenceServer, client: AsyncVLAClient) -> None:
    info = await client.model_info()
    assert info == server.models["flow-tiny"].policy.info
    assert (await client.model_info("ar-tiny")).policy_type == "vla-ar"
    health = await client.health()
    assert health.ready
    assert health.status == "SERVING"
    assert health.queue_depth == 0
    assert health.uptime_seconds > 0
    assert list(health.models) == ["ar-tiny", "flow-tiny"]
    assert not health.has_gpu


async def test_standard_health_and_reflection(server: InferenceServer) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        check = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="vlarena.v1.VLAInference")
        )
        assert check.status == health_pb2.HealthCheckResponse.SERVING
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)

        async def ask() -> AsyncIterator[reflection_pb2.ServerReflectionRequest]:
            yield reflection_pb2.ServerReflectionRequest(list_services="")

        async for reply in stub.ServerReflectionInfo(ask()):
            names = {s.name for s in reply.list_services_response.service}
            assert {"vlarena.v1.VLAInference", "grpc.health.v1.Health"} <= names


async def test_sync_client(server: InferenceServer) -> None:
    def use() -> tuple[Any, ...]:
        with VLAClient(ClientOptions(target=f"127.0.0.1:{server.port}")) as c:
            obs = synthetic_observation(c.model_info())
            return c.predict(obs, seed=1), list(c.stream([obs, obs])), c.health()

    prediction, streamed, health = await asyncio.to_thread(use)
    assert prediction.actions.shape == (4, 8)
    assert 1 <= len(streamed) <= 2
    assert health.ready


async def test_concurrent_clients_are_batched(start_server: StartServer) -> None:
    server = await start_server(batch_size=8, max_queue_delay_ms=200)
    async with AsyncVLAClient(ClientOptions(target=f"127.0.0.1:{server.port}")) as c:
        replies = await asyncio.gather(*(c.predict(obs_for(server, seed=i)) for i in range(8)))
    assert max(r.batch_size for r in replies) > 1
    text = metrics_text(server)
    batches = metric_value(text, 'vla_batch_size_count{model="flow-tiny"}')
    requests = metric_value(text, 'vla_batch_size_sum{model="flow-tiny"}')
    assert requests == 8
    assert batches < 8


async def test_stream_newest_observation_wins(server: InferenceServer) -> None:
    queue: asyncio.Queue[Observation | None] = asyncio.Queue()

    async def observations() -> AsyncIterator[Observation]:
        while (item := await queue.get()) is not None:
            yield item

    async with AsyncVLAClient(ClientOptions(target=f"127.0.0.1:{server.port}")) as c:
        with blocked(server) as release:
            replies: list[int] = []

            async def consume() -> None:
                async for prediction in c.stream(observations()):
                    replies.append(prediction.sequence)

            consumer = asyncio.create_task(consume())
            for i in range(5):
                await queue.put(obs_for(server, seed=i))
            await wait_until(lambda: metric_value(metrics_text(server), "vla_stream") >= 3)
            release.set()
            await wait_until(lambda: 4 in replies)
            await queue.put(None)
            await consumer
    assert replies[-1] == 4
    assert len(replies) < 5  # superseded observations were never run


def depth(server: InferenceServer) -> int:
    return sum(m.batcher.depth for m in server.models.values())


async def test_queue_full_answers_resource_exhausted_at_once(start_server: StartServer) -> None:
    server = await start_server(batch_size=1, max_queue_size=2)
    async with AsyncVLAClient(ClientOptions(target=f"127.0.0.1:{server.port}")) as c:
        with blocked(server):
            waiting = [asyncio.create_task(c.predict(obs_for(server))) for _ in range(3)]
            for _ in range(20):
                try:
                    await wait_until(lambda: depth(server) >= 2, timeout_s=0.5)
                    break
                except AssertionError:
                    # On a busy machine all three can be decoding (each holding a place)
                    # before the batcher takes the first: the third was refused, and the
                    # queue holds one once the first runs. Top it up.
                    waiting.append(asyncio.create_task(c.predict(obs_for(server))))
            assert depth(server) >= 2
            with pytest.raises(QueueFullError, match="queue is full") as err:
                await asyncio.wait_for(c.predict(obs_for(server)), 2.0)
            assert err.value.retry_after_s is not None  # the retry hint travels too
        results = await asyncio.gather(*waiting, return_exceptions=True)
    assert any(not isinstance(r, BaseException) for r in results)


async def test_server_deadline_drops_request_before_inference(start_server: StartServer) -> None:
    server = await start_server(batch_size=1, timeout_ms=200)
    batches_before = metric_value(metrics_text(server), "vla_compute_time_seconds_count")
    async with AsyncVLAClient(ClientOptions(target=f"127.0.0.1:{server.port}")) as c:
        with blocked(server), pytest.raises(DeadlineExceededError):
            await c.predict(obs_for(server))
        await c.predict(obs_for(server))  # the server keeps serving
    text = metrics_text(server)
    assert metric_value(text, "vla_compute_time_seconds_count") == batches_before + 1
    assert (
        metric_value(text, 'vla_inference_requests_total{model="flow-tiny",status="DEADLINE') == 1
    )


async def test_client_deadline_and_cancellation_leave_the_queue(server: InferenceServer) -> None:
    options = ClientOptions(target=f"127.0.0.1:{server.port}", timeout_s=0.2)
    async with AsyncVLAClient(options) as c:
        with blocked(server):
            with pytest.raises(DeadlineExceededError):
                await c.predict(obs_for(server))
            c.options = ClientOptions(target=options.target, timeout_s=30)
            call = asyncio.create_task(c.predict(obs_for(server)))
            await wait_until(lambda: server.models["flow-tiny"].batcher.depth == 1)
            call.cancel()
            await wait_until(lambda: server.models["flow-tiny"].batcher.depth == 0)


def _reshape(msg: pb.Observation, shape: list[int]) -> None:
    msg.images[0].raw.ClearField("shape")
    msg.images[0].raw.shape.extend(shape)


def _png(size: tuple[int, int], fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size).save(buffer, format=fmt)
    return buffer.getvalue()


def _bad(server: InferenceServer, change: Callable[[pb.Observation], None]) -> pb.Observation:
    msg = codec.encode_observation(obs_for(server))
    change(msg)
    return msg


BAD_INPUTS: list[tuple[str, Callable[[pb.Observation], None], grpc.StatusCode, str]] = [
    (
        "jpeg",
        lambda m: m.images[0].ClearField("raw") or setattr(m.images[0], "encoded", b"xx"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "could not be decoded",
    ),
    (
        "size",
        lambda m: m.images[0].raw.CopyFrom(codec.encode_tensor(np.zeros((8, 8, 3), np.uint8))),
        grpc.StatusCode.INVALID_ARGUMENT,
        "expects 32x32",
    ),
    (
        "png-size",
        lambda m: setattr(m.images[0], "encoded", _png((4000, 4000))),
        grpc.StatusCode.INVALID_ARGUMENT,
        "is 4000x4000, model expects 32x32",
    ),
    (
        "gif",
        lambda m: setattr(m.images[0], "encoded", _png((32, 32), "GIF")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "could not be decoded",
    ),
    (
        "overflow",
        lambda m: m.images[0].raw.shape.extend([2**32, 2**32]) or None,
        grpc.StatusCode.INVALID_ARGUMENT,
        "dimensions",
    ),
    ("wrap", lambda m: _reshape(m, [2**62 + 1, 4]), grpc.StatusCode.INVALID_ARGUMENT, "needs"),
    (
        "joints",
        lambda m: m.joint_positions.append(0.0),
        grpc.StatusCode.INVALID_ARGUMENT,
        "joint_velocities has 9 values, joint_positions 10",
    ),
    (
        "nan",
        lambda m: m.joint_positions.__setitem__(0, float("nan")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "NaN",
    ),
    (
        "model",
        lambda m: setattr(m, "model", "gr00t"),
        grpc.StatusCode.NOT_FOUND,
        "unknown model 'gr00t'; valid: ar-tiny, flow-tiny",
    ),
    ("camera", lambda m: m.images.pop(), grpc.StatusCode.INVALID_ARGUMENT, "expects cameras"),
    (
        "bytes",
        lambda m: setattr(m.images[0].raw, "data", b"123"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "needs 3072 bytes",
    ),
    (
        "dtype",
        lambda m: setattr(m.images[0].raw, "dtype", "object"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "dtype 'object'",
    ),
    (
        "text",
        lambda m: setattr(m, "language_instruction", ""),
        grpc.StatusCode.INVALID_ARGUMENT,
        "instruction",
    ),
    (
        "big",
        lambda m: setattr(m, "language_instruction", "x" * (2 << 20)),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "larger than max",
    ),
]


@pytest.mark.parametrize(
    ("change", "code", "message"), [b[1:] for b in BAD_INPUTS], ids=[b[0] for b in BAD_INPUTS]
)
async def test_bad_input_gets_a_clear_status(
    start_server: StartServer,
    raw_stub: Stub,
    change: Callable[[pb.Observation], None],
    code: grpc.StatusCode,
    message: str,
) -> None:
    server = await start_server(max_message_size_mb=1)
    stub = raw_stub(server)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Predict(_bad(server, change), timeout=5)
    assert err.value.code() == code
    assert message in str(err.value.details())
    assert "Traceback" not in str(err.value.details())
    assert (await stub.Predict(_bad(server, lambda m: None), timeout=5)).actions  # still serving


async def test_health_transitions_through_warmup_and_drain(
    start_server: StartServer, raw_stub: Stub
) -> None:
    server = await start_server(wait_ready=False)
    with blocked(server) as release:  # the warm-up queues behind the block
        stub = raw_stub(server)
        status = await stub.HealthCheck(pb.HealthRequest())
        assert (status.ready, status.status) == (False, "STARTING")
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Predict(codec.encode_observation(obs_for(server)), timeout=5)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        release.set()
        await server.wait_ready()
    assert (await stub.HealthCheck(pb.HealthRequest())).status == "SERVING"
    with blocked(server) as release:
        in_flight = asyncio.ensure_future(stub.Predict(codec.encode_observation(obs_for(server))))
        await asyncio.sleep(0.2)  # queued behind the block
        stopping = asyncio.create_task(server.stop(grace_s=5))
        await wait_until(lambda: server.state.status == "DRAINING")
        release.set()
        assert (await in_flight).actions  # drained, not dropped
        await stopping


async def test_metrics_endpoint(server: InferenceServer, client: AsyncVLAClient) -> None:
    await client.predict(obs_for(server))
    text = metrics_text(server)
    names = [
        "vla_inference_latency_seconds_bucket",
        "vla_inference_requests_total",
        "vla_batch_size_bucket",
        "vla_queue_depth",
        "vla_uptime_seconds",
        "vla_model_info",
        "vla_queue_time_seconds",
        "vla_compute_time_seconds",
    ]
    for name in names:
        assert name in text, name
    assert "vla_gpu_" not in text  # no GPU here: the gauges are absent, not zero


async def test_token_auth(start_server: StartServer) -> None:
    server = await start_server(auth_token="s3cret")
    target = f"127.0.0.1:{server.port}"
    async with AsyncVLAClient(ClientOptions(target=target)) as anonymous:
        with pytest.raises(AuthError):
            await anonymous.predict(obs_for(server))
    async with AsyncVLAClient(ClientOptions(target=target, token="wrong")) as wrong:
        with pytest.raises(AuthError):
            await wrong.health()
    async with AsyncVLAClient(ClientOptions(target=target, token="s3cret")) as c:
        assert (await c.predict(obs_for(server))).actions.shape == (4, 8)
    async with grpc.aio.insecure_channel(target) as channel:  # k8s probes need no token
        check = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        assert check.status == health_pb2.HealthCheckResponse.SERVING


async def test_tls(start_server: StartServer, tmp_path: Path) -> None:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    server = await start_server(tls_cert=cert, tls_key=key)
    target = f"127.0.0.1:{server.port}"
    async with AsyncVLAClient(
        ClientOptions(target=target, root_certificates=cert.read_bytes())
    ) as c:
        assert (await c.predict(obs_for(server))).actions.shape == (4, 8)
    async with AsyncVLAClient(ClientOptions(target=target, timeout_s=2)) as plaintext:
        with pytest.raises(UnavailableError, match="UNAVAILABLE"):
            await plaintext.health()


async def test_malformed_stream_message_ends_the_stream_clearly(server: InferenceServer) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        call = channel.stream_stream(
            "/vlarena.v1.VLAInference/StreamControl",
            request_serializer=lambda raw: raw,
            response_deserializer=pb.ActionChunk.FromString,
        )

        async def frames() -> AsyncIterator[bytes]:
            yield codec.encode_observation(obs_for(server)).SerializeToString()
            await asyncio.sleep(0.3)
            yield b"\xff\xff\xff not a protobuf"

        replies: list[pb.ActionChunk] = []

        async def consume() -> None:
            async for reply in call(frames(), timeout=10):
                replies.append(reply)

        with pytest.raises(grpc.aio.AioRpcError) as err:
            await consume()
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert len(replies) == 1


async def test_unknown_model_names_share_one_metric_label(
    server: InferenceServer, raw_stub: Stub
) -> None:
    for name in ("a" * 100, "b" * 100):  # client-chosen, under the name length cap
        request = codec.encode_observation(obs_for(server), model=name)
        with pytest.raises(grpc.aio.AioRpcError):
            await raw_stub(server).Predict(request)
    text = metrics_text(server)
    assert 'model="unknown",status="NOT_FOUND"} 2.0' in text
    assert "aaaa" not in text


async def test_failed_warmup_is_reported(start_server: StartServer, raw_stub: Stub) -> None:
    from tests.runtime.test_batching import FlakyPolicy
    from vlarena.policies import PRESETS
    from vlarena.serving.settings import ServerSettings

    server = InferenceServer(
        ServerSettings(grpc_port=0, metrics_enabled=False),
        policies=[FlakyPolicy.create(PRESETS["tiny"], "flaky")],
    )
    await server.start()
    try:
        with pytest.raises(RuntimeError, match="device hiccup"):
            await server.wait_ready()
        status = await raw_stub(server).HealthCheck(pb.HealthRequest())
        assert (status.ready, status.status) == (False, "FAILED")
    finally:
        await server.stop(grace_s=0)


async def test_dual_rate_stream(start_server: StartServer) -> None:
    server = await start_server(dual_rate_vlm_hz=5.0)

    async def observations() -> AsyncIterator[Observation]:
        for i in range(12):
            yield obs_for(server, seed=i)
            await asyncio.sleep(0.05)

    async with AsyncVLAClient(ClientOptions(target=f"127.0.0.1:{server.port}")) as c:
        replies = [p async for p in c.stream(observations(), dual_rate=True)]
    assert len(replies) >= 6
    assert all(p.feature_version >= 1 for p in replies)
    assert replies[-1].feature_version > replies[0].feature_version  # refreshed in the background
    assert max(p.feature_age_ms for p in replies) > 0
    assert all(p.actions.shape == (4, 8) for p in replies)
    text = metrics_text(server)
    assert metric_value(text, 'vla_dual_rate_refreshes_total{model="flow-tiny"}') >= 2
    assert "vla_dual_rate_feature_age_seconds_bucket" in text


class Untimed(Policy):
    """A policy that, like most outside ones, does not time itself."""

    def __init__(self, inner: Policy) -> None:
        self.inner = inner

    @property
    def info(self) -> ModelInfo:
        return self.inner.info

    def predict(
        self, observations: Sequence[Observation], seeds: Seeds = None
    ) -> list[ActionChunk]:
        return [replace(c, timing_ms={}) for c in self.inner.predict(observations, seeds)]


async def test_a_server_serves_remote_and_untimed_policies(start_server: StartServer) -> None:
    inner = await start_server(batch_size=1)
    local = inner.models["flow-tiny"].policy
    options = ClientOptions(target=f"127.0.0.1:{inner.port}")
    remote = await asyncio.to_thread(RemotePolicy, VLAClient(options), "flow-tiny")
    direct = await asyncio.to_thread(remote.predict, [obs_for(inner)], [0])
    assert set(direct[0].timing_ms) == {"policy"}  # its own layer: the round trip
    proxy = await start_server(policies=[remote], batch_size=2)
    untimed = await start_server(policies=[Untimed(local)], batch_size=2)
    expected = local.predict([obs_for(inner)], [0])[0].actions
    for server in (proxy, untimed):
        async with AsyncVLAClient(ClientOptions(target=f"127.0.0.1:{server.port}")) as c:
            chunk = await c.predict(obs_for(server), seed=0)
        np.testing.assert_allclose(chunk.actions, expected, atol=1e-5)
        assert set(chunk.timing_ms) == {"policy", "queue", "server", "round_trip"}
        assert chunk.timing_ms["policy"] > 0  # the batcher timed the call for the untimed one


class NonFinite(Untimed):
    """A faulty model: its actions for the instruction "fault" are NaN."""

    def predict(
        self, observations: Sequence[Observation], seeds: Seeds = None
    ) -> list[ActionChunk]:
        if observations[0].instruction == "fault":
            return [ActionChunk(np.full((4, 8), np.nan, np.float32), self.info.name)]
        return self.inner.predict(observations, seeds)


async def test_non_finite_actions_are_an_internal_error_never_ok(start_server: StartServer) -> None:
    tiny = (await start_server()).models["flow-tiny"].policy
    server = await start_server(policies=[NonFinite(tiny)])
    async with AsyncVLAClient(ClientOptions(target=f"127.0.0.1:{server.port}")) as c:
        with pytest.raises(PolicyOutputError, match=r"returned actions of shape .* NaN or inf"):
            await c.predict(replace(obs_for(server), instruction="fault"))
    text = metrics_text(server)
    assert metric_value(text, 'vla_nonfinite_actions_total{model="flow-tiny"}') == 1
    assert 'model="flow-tiny",status="INTERNAL"} 1.0' in text


async def test_one_client_spreads_calls_over_replicas(start_server: StartServer) -> None:
    """A target listing several servers (as a headless Service's name resolves) gets round
    robin: every replica answers some of one channel's calls."""
    replicas = [await start_server() for _ in range(2)]
    target = "ipv4:" + ",".join(f"127.0.0.1:{r.port}" for r in replicas)
    obs = obs_for(replicas[0], "flow-tiny")
    async with AsyncVLAClient(ClientOptions(target=target)) as client:
        for _ in range(8):
            await client.predict(obs, model="flow-tiny")
    served = [
        r.metrics.registry.get_sample_value(
            "vla_inference_requests_total", {"model": "flow-tiny", "status": "OK"}
        )
        for r in replicas
    ]
    assert all(n and n >= 2 for n in served), served
