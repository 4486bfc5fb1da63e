"""Conversions between protobuf messages and domain types, for the server and the clients."""

import dataclasses
import io
import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from vlarena.errors import InvalidObservationError, PolicyOutputError, echo
from vlarena.serving.v1 import inference_pb2 as pb
from vlarena.types import ActionChunk, ModelInfo, Observation, RobotState, decode_image

DTYPES = ("uint8", "float32", "float64", "int32", "int64")
MAX_TENSOR_DIMS = 4


def decode_tensor(tensor: pb.Tensor, name: str) -> NDArray[np.generic]:
    """A typed tensor message → numpy array; every inconsistency is an InvalidObservationError."""
    if tensor.dtype not in DTYPES:
        raise InvalidObservationError(f"{name}: dtype {echo(tensor.dtype)} not one of {DTYPES}")
    dtype = np.dtype(tensor.dtype).newbyteorder("<")
    shape = tuple(tensor.shape)
    if not 0 < len(shape) <= MAX_TENSOR_DIMS or any(d <= 0 for d in shape):
        raise InvalidObservationError(
            f"{name}: shape {echo(list(shape))} must have 1..{MAX_TENSOR_DIMS} positive dimensions"
        )
    expected = math.prod(shape) * dtype.itemsize  # Python ints: no overflow
    if expected != len(tensor.data):
        raise InvalidObservationError(
            f"{name}: shape {list(shape)} of {tensor.dtype} needs {expected} bytes, "
            f"got {len(tensor.data)}"
        )
    return np.frombuffer(tensor.data, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))


def encode_tensor(array: NDArray[np.generic]) -> pb.Tensor:
    arr = np.ascontiguousarray(array)
    little = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
    return pb.Tensor(dtype=arr.dtype.name, shape=list(arr.shape), data=little.tobytes())


def _decode_camera(image: pb.CameraImage, info: ModelInfo) -> NDArray[np.uint8]:
    kind = image.WhichOneof("payload")
    if kind == "encoded":
        size = (info.image_height, info.image_width)
        return decode_image(image.encoded, camera=image.camera, expected_size=size)
    if kind == "raw":
        return np.asarray(decode_tensor(image.raw, f"image {echo(image.camera)}"))
    raise InvalidObservationError(
        f"image {echo(image.camera)} has neither encoded bytes nor raw data"
    )


def decode_observation(msg: pb.Observation, info: ModelInfo) -> Observation:
    """Decode and validate an observation against the model that will receive it."""
    images: dict[str, NDArray[np.uint8]] = {}
    for image in msg.images:
        if image.camera in images:
            raise InvalidObservationError(f"camera {echo(image.camera)} appears twice")
        images[image.camera] = _decode_camera(image, info)
    sensor = (
        decode_tensor(msg.sensor_window, "sensor_window") if msg.HasField("sensor_window") else None
    )
    state = RobotState(
        np.asarray(msg.joint_positions, np.float32),
        np.asarray(msg.joint_velocities, np.float32),
        None if sensor is None else sensor.astype(np.float32),
    )
    obs = Observation(
        images=images,
        state=state,
        instruction=msg.language_instruction,
        embodiment=msg.embodiment_tag or info.embodiments[0],
        timestamp_s=msg.client_timestamp,
    )
    info.check(obs)
    return obs


def encode_observation(
    obs: Observation,
    *,
    model: str = "",
    seed: int | None = None,
    sequence: int = 0,
    jpeg_quality: int | None = None,
) -> pb.Observation:
    """An Observation as a request; images raw (lossless) unless a JPEG quality is given."""
    images = []
    for camera, array in obs.images.items():
        if jpeg_quality is None:
            images.append(pb.CameraImage(camera=camera, raw=encode_tensor(array)))
        else:
            buffer = io.BytesIO()
            Image.fromarray(array).save(buffer, format="JPEG", quality=jpeg_quality)
            images.append(pb.CameraImage(camera=camera, encoded=buffer.getvalue()))
    msg = pb.Observation(
        images=images,
        joint_positions=obs.state.joint_positions.tolist(),
        joint_velocities=obs.state.joint_velocities.tolist(),
        language_instruction=obs.instruction,
        embodiment_tag=obs.embodiment,
        model=model,
        client_timestamp=obs.timestamp_s,
        sequence=sequence,
    )
    if obs.state.sensor_window is not None:
        msg.sensor_window.CopyFrom(encode_tensor(obs.state.sensor_window))
    if seed is not None:
        msg.seed = seed
    return msg


def encode_chunk(chunk: ActionChunk, request: pb.Observation) -> pb.ActionChunk:
    timing = chunk.timing_ms
    return pb.ActionChunk(
        actions=[pb.Action(values=row.tolist()) for row in chunk.actions],
        inference_time_ms=timing.get("policy", 0.0),
        queue_time_ms=timing.get("queue", 0.0),
        timing_ms=timing,
        confidence=chunk.confidence or 0.0,
        has_confidence=chunk.confidence is not None,
        model_id=chunk.model_id,
        client_timestamp=request.client_timestamp,
        sequence=request.sequence,
        batch_size=chunk.batch_size,
        feature_version=chunk.feature_version,
        feature_age_ms=chunk.feature_age_ms,
    )


def decode_chunk(msg: pb.ActionChunk) -> ActionChunk:
    """A reply as a chunk; PolicyOutputError if its actions are not an H x D table."""
    # A server from before the per-layer record sends only the policy and queue times.
    timing = dict(msg.timing_ms) or {"policy": msg.inference_time_ms, "queue": msg.queue_time_ms}
    try:
        return ActionChunk(
            actions=np.array([list(a.values) for a in msg.actions], dtype=np.float32),
            model_id=msg.model_id,
            confidence=msg.confidence if msg.has_confidence else None,
            timing_ms=timing,
            batch_size=msg.batch_size,
            feature_version=msg.feature_version,
            feature_age_ms=msg.feature_age_ms,
            sequence=msg.sequence,
        )
    except ValueError as exc:
        raise PolicyOutputError(f"the server answered malformed actions: {exc}") from None


_INFO_FIELDS = [f.name for f in dataclasses.fields(ModelInfo)]  # same names in pb.ModelInfo


def encode_model_info(
    info: ModelInfo, device: str, precision: str, served: Sequence[str]
) -> pb.ModelInfo:
    fields = {name: getattr(info, name) for name in _INFO_FIELDS}
    return pb.ModelInfo(**fields, device=device, precision=precision, served_models=list(served))


def decode_model_info(msg: pb.ModelInfo) -> ModelInfo:
    fields = {name: getattr(msg, name) for name in _INFO_FIELDS}
    lists = {k: tuple(v) for k, v in fields.items() if not isinstance(v, str | int | float)}
    return ModelInfo(**(fields | lists))
