"""Hostile requests on the gRPC decode path: property-based (hypothesis), in-process and over
loopback, plus the exact cases an outside tester found, kept as regression tests."""

import asyncio
import math
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.serving.conftest import StartServer
from vlarena.errors import InvalidObservationError, UnknownNameError
from vlarena.policies.shipped import shipped_checkpoint
from vlarena.policies.specs import resolve_policy
from vlarena.policies.synthetic import synthetic_observation
from vlarena.serving import codec
from vlarena.serving.server import InferenceServer
from vlarena.serving.status import MAX_DETAIL_BYTES
from vlarena.serving.v1 import inference_pb2 as pb
from vlarena.types import ModelInfo

IN_PROCESS_EXAMPLES = 1000  # generated messages decoded by codec.decode_observation
LOOPBACK_EXAMPLES = 200  # generated messages (or raw bytes) sent to a real server's Predict
MAX_MESSAGE_CHARS = 400  # no error message a client gets is longer
PREDICT = "/vlarena.v1.VLAInference/Predict"
EXPECTED = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND}

floats = st.floats(width=32) | st.sampled_from([1e20, -1e20, 5e18, 1e6, float("nan"), math.inf])
names = st.text(max_size=300) | st.sampled_from(["front", "wrist", "franka", "x" * 20_000])
sometimes = st.integers(0, 3).map(lambda n: n == 0)  # a field is replaced a quarter of the time
dims = st.lists(st.integers(-2, 2**40) | st.sampled_from([1, 3, 32]), max_size=6)


@st.composite
def tensors(draw: st.DrawFn) -> pb.Tensor:
    """Valid-shaped uint8 images, or any dtype, shape and bytes."""
    if draw(st.booleans()):
        data = draw(st.binary(min_size=32 * 32 * 3, max_size=32 * 32 * 3))
        return pb.Tensor(dtype="uint8", shape=[32, 32, 3], data=data)
    dtype = draw(st.sampled_from(["uint8", "float32", "float64", "int64", "object", "<f4", ""]))
    return pb.Tensor(dtype=dtype, shape=draw(dims), data=draw(st.binary(max_size=256)))


@st.composite
def observations(draw: st.DrawFn, base: pb.Observation) -> pb.Observation:
    """`base` (a valid request) with some of its fields replaced by hostile values."""
    msg = pb.Observation()
    msg.CopyFrom(base)
    if draw(sometimes):
        msg.ClearField("joint_positions")
        msg.joint_positions.extend(draw(st.lists(floats, max_size=12)))
    if draw(sometimes):
        msg.ClearField("joint_velocities")
        msg.joint_velocities.extend(draw(st.lists(floats, min_size=9, max_size=9)))
    if draw(sometimes):
        camera = msg.images[draw(st.integers(0, len(msg.images) - 1))]
        camera.camera = draw(names)
        if draw(st.booleans()):
            camera.raw.CopyFrom(draw(tensors()))
        elif draw(st.booleans()):
            camera.encoded = draw(st.binary(max_size=64))
    if draw(sometimes):
        msg.sensor_window.CopyFrom(draw(tensors()))
    for field in ("language_instruction", "embodiment_tag", "model"):
        if draw(sometimes):
            setattr(msg, field, draw(names))
    if draw(sometimes):
        msg.client_timestamp = draw(st.floats())
    return msg


def _info(server: InferenceServer) -> ModelInfo:
    return server.models["flow-tiny"].policy.info


def _base(info: ModelInfo) -> pb.Observation:
    return codec.encode_observation(synthetic_observation(info), seed=0)


@pytest.fixture(scope="module")
def tiny_info() -> ModelInfo:
    from tests.serving.conftest import tiny_policies

    return tiny_policies()[0].info  # type: ignore[no-any-return]


@settings(
    max_examples=IN_PROCESS_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_decoding_refuses_or_accepts_never_crashes(tiny_info: ModelInfo, data: Any) -> None:
    msg = data.draw(observations(_base(tiny_info)))
    message = ""
    try:
        assert codec.decode_observation(msg, tiny_info).checked_against == tiny_info
    except InvalidObservationError as exc:
        message = str(exc)
    assert len(message) <= MAX_MESSAGE_CHARS, message


def _check_status(err: grpc.aio.AioRpcError) -> None:
    assert err.code() in EXPECTED, (err.code(), err.details())
    details = err.details() or ""
    assert len(details) <= MAX_MESSAGE_CHARS, details
    assert "<class" not in details
    assert "Traceback" not in details


@pytest.fixture
async def fuzz_server(start_server: StartServer) -> InferenceServer:
    return await start_server(batch_size=4, max_queue_delay_ms=1)  # type: ignore[no-any-return]


@pytest.fixture
async def raw_predict(fuzz_server: InferenceServer) -> AsyncIterator[Callable[..., Any]]:
    """Predict over loopback, sending bytes as they are and decoding the reply."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{fuzz_server.port}") as channel:
        yield channel.unary_unary(
            PREDICT, request_serializer=None, response_deserializer=pb.ActionChunk.FromString
        )


async def _answer(predict: Callable[..., Any], raw: bytes) -> pb.ActionChunk | None:
    """The reply, or None after checking that the refusal is a clear, expected one."""
    try:
        return await predict(raw, timeout=10)
    except grpc.aio.AioRpcError as err:
        _check_status(err)
        return None


async def test_loopback_predict_refuses_clearly_or_answers_finite_actions(
    fuzz_server: InferenceServer, raw_predict: Callable[..., Any]
) -> None:
    base = _base(_info(fuzz_server))
    requests: list[bytes] = []

    @settings(max_examples=LOOPBACK_EXAMPLES, deadline=None, database=None)
    @given(msg=observations(base), raw=st.binary(max_size=64), as_bytes=st.booleans())
    def collect(msg: pb.Observation, raw: bytes, as_bytes: bool) -> None:
        requests.append(raw if as_bytes else msg.SerializeToString())

    collect()  # hypothesis drives a sync function; the calls then run on this test's loop
    replies = await asyncio.gather(*(_answer(raw_predict, r) for r in requests))
    for reply in replies:
        if reply is not None:
            assert np.isfinite([v for a in reply.actions for v in a.values]).all()


def _with(info: ModelInfo, change: Callable[[pb.Observation], None]) -> pb.Observation:
    msg = _base(info)
    change(msg)
    return msg


HUGE_NAME = "x" * 20_000
# The exact requests the outside tester reported: (id, change, status, message fragment).
CORPUS: list[tuple[str, Callable[[pb.Observation], None], grpc.StatusCode, str]] = [
    (
        "joint-positions-1e20",
        lambda m: m.joint_positions.__setitem__(0, 1e20),
        grpc.StatusCode.INVALID_ARGUMENT,
        "joint_positions[0] = 1e+20 is outside",
    ),
    (
        "joint-velocities-1e20",
        lambda m: m.joint_velocities.__setitem__(3, 1e20),
        grpc.StatusCode.INVALID_ARGUMENT,
        "joint_velocities[3] = 1e+20 is outside",
    ),
    (
        "model-20kB",
        lambda m: setattr(m, "model", HUGE_NAME),
        grpc.StatusCode.INVALID_ARGUMENT,
        "model name 'xxx",
    ),
    (
        "embodiment-20kB",
        lambda m: setattr(m, "embodiment_tag", HUGE_NAME),
        grpc.StatusCode.INVALID_ARGUMENT,
        "embodiment name 'xxx",
    ),
    (
        "camera-20kB",
        lambda m: setattr(m.images[0], "camera", HUGE_NAME),
        grpc.StatusCode.INVALID_ARGUMENT,
        "camera name 'xxx",
    ),
]
RAW_CORPUS = {
    "invalid-utf8": b"\x22\x02\xff\xfe",  # language_instruction: two bytes that are not UTF-8
    "random-bytes": bytes(np.random.default_rng(0).integers(0, 256, 64, dtype=np.uint8)),
    "truncated-field": b"\x22\x10abc",  # a 16-byte string field with 3 bytes
    "11-byte-varint": b"\x48" + b"\xff" * 10 + b"\x01",  # sequence: a varint of 11 bytes
}


@pytest.mark.parametrize(
    ("change", "code", "fragment"), [c[1:] for c in CORPUS], ids=[c[0] for c in CORPUS]
)
async def test_reported_requests_get_a_clear_status(
    fuzz_server: InferenceServer,
    raw_predict: Callable[..., Any],
    change: Callable[[pb.Observation], None],
    code: grpc.StatusCode,
    fragment: str,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await raw_predict(_with(_info(fuzz_server), change).SerializeToString(), timeout=10)
    assert err.value.code() == code
    assert fragment in str(err.value.details())
    _check_status(err.value)


@pytest.mark.parametrize("raw", RAW_CORPUS.values(), ids=RAW_CORPUS.keys())
async def test_undecodable_requests_are_invalid_argument(
    fuzz_server: InferenceServer, raw_predict: Callable[..., Any], raw: bytes
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await raw_predict(raw, timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert str(err.value.details()).startswith("malformed request: Error parsing message")
    _check_status(err.value)
    assert (await raw_predict(_base(_info(fuzz_server)).SerializeToString())).actions


async def test_undecodable_model_info_request_is_invalid_argument(
    fuzz_server: InferenceServer,
) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{fuzz_server.port}") as channel:
        call = channel.unary_unary("/vlarena.v1.VLAInference/GetModelInfo")
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call(RAW_CORPUS["invalid-utf8"].replace(b"\x22", b"\x0a"), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_shipped_model_refuses_absurd_joint_values() -> None:
    path = shipped_checkpoint("vla-flow-small")
    if path is None:
        pytest.skip("vla-flow-small is not installed")
    info = resolve_policy(str(path)).info
    for field in ("joint_positions", "joint_velocities"):
        msg = _base(info)
        getattr(msg, field)[0] = 1e20
        with pytest.raises(InvalidObservationError, match=rf"{field}\[0\] = 1e\+20 is outside"):
            codec.decode_observation(msg, info)
    codec.decode_observation(_base(info), info)  # a synthetic (in-range) state passes


def test_abort_detail_fits_the_metadata_limit() -> None:
    from vlarena.serving.status import _detail

    assert _detail("ok") == "ok"
    long = _detail("é" * 10_000)
    assert len(long.encode()) <= MAX_DETAIL_BYTES
    assert long.endswith("…")


def test_unknown_name_echo_is_clipped() -> None:
    message = str(UnknownNameError("model", HUGE_NAME, ["a"]))
    assert len(message) < 150
    assert message.endswith("; valid: a")
