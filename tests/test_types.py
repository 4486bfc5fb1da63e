"""Observation, RobotState, ActionChunk and ModelInfo validation: every error path."""

import dataclasses
import io
from typing import Any

import numpy as np
import pytest
from PIL import Image

from vlarena import InvalidObservationError, ModelInfo, Observation, RobotState, decode_image
from vlarena.errors import ConfigError, NonFiniteActionsError
from vlarena.types import MAX_IMAGE_SIDE_PX, MAX_NAME_CHARS, ActionChunk

J = 3


def state(**overrides: Any) -> RobotState:
    kwargs: dict[str, Any] = {"joint_positions": [0.0] * J, "joint_velocities": [0.0] * J}
    return RobotState(**(kwargs | overrides))


def obs(rgb: np.ndarray, **overrides: Any) -> Observation:
    kwargs: dict[str, Any] = {"images": {"front": rgb}, "state": state(), "instruction": "go"}
    return Observation(**(kwargs | overrides))


INFO = ModelInfo(
    name="m",
    version="1",
    policy_type="t",
    action_dim=2,
    chunk_size=4,
    camera_names=("front",),
    image_height=32,
    image_width=32,
    state_dim=J,
    sensor_window=5,
    sensor_dim=2,
)


def test_valid_observation_converts_to_float32(rgb: np.ndarray) -> None:
    o = obs(rgb, state=state(joint_positions=[1, 2, 3]))
    assert o.state.joint_positions.dtype == np.float32
    assert o.images["front"].shape == (32, 32, 3)
    with pytest.raises(TypeError):
        o.images["extra"] = rgb  # type: ignore[index]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"joint_positions": [0.0, float("nan"), 0.0]}, "NaN or inf"),
        ({"joint_velocities": [0.0, float("inf"), 0.0]}, "NaN or inf"),
        ({"joint_velocities": [0.0, 0.0]}, "has 2 values, joint_positions 3"),
        ({"joint_positions": [[0.0, 1.0]], "joint_velocities": [[0.0, 1.0]]}, "1 dimension"),
        ({"joint_positions": [], "joint_velocities": []}, "each dimension must be 1..limit"),
        ({"joint_positions": ["a", "b", "c"]}, "must be numeric"),
        ({"joint_positions": [0.0, [1.0], 2.0]}, "must be numeric"),
        ({"sensor_window": np.zeros(5)}, "2 dimension"),
        ({"sensor_window": [[1.0, 2.0], [3.0]]}, "must be numeric"),
        ({"sensor_window": "abc"}, "must be numeric"),
        ({"sensor_window": np.full((5, 2), np.nan)}, r"sensor_window \(TxD\) contains NaN"),
        ({"sensor_window": np.zeros((10_000, 2))}, "each dimension must be 1..limit"),
    ],
)
def test_robot_state_errors(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidObservationError, match=message):
        state(**overrides)


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((32, 32, 3), dtype=np.float32), "must be uint8"),
        (np.zeros((32, 32), dtype=np.uint8), r"must be HxWx3"),
        (np.zeros((32, 32, 4), dtype=np.uint8), r"must be HxWx3"),
        (np.zeros((MAX_IMAGE_SIDE_PX + 1, 1, 3), dtype=np.uint8), "each side must be"),
        (np.zeros((0, 32, 3), dtype=np.uint8), "each side must be"),
    ],
)
def test_image_errors(image: np.ndarray, message: str) -> None:
    with pytest.raises(InvalidObservationError, match=message):
        obs(image, images={"front": image})


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"instruction": ""}, "non-empty"),
        ({"instruction": "   "}, "non-empty"),
        ({"instruction": "x" * 2000}, "longer than"),
        ({"images": {}}, "at least one image"),
        ({"images": [np.zeros((2, 2, 3), np.uint8)]}, "must map camera names"),
        ({"images": {1: np.zeros((2, 2, 3), np.uint8)}}, "non-empty strings"),
        ({"instruction": "bad \ud800 surrogate"}, "not valid Unicode"),
        ({"instruction": 5}, "non-empty string"),
        ({"embodiment": 5}, "embodiment"),
        ({"timestamp_s": "now"}, "timestamp_s must be a number"),
        ({"timestamp_s": None}, "timestamp_s must be a number"),
        ({"images": {f"c{i}": np.zeros((2, 2, 3), np.uint8) for i in range(9)}}, "at most 8"),
        ({"embodiment": ""}, "embodiment"),
        ({"timestamp_s": float("nan")}, "timestamp_s"),
        ({"state": "not a state"}, "RobotState"),
    ],
)
def test_observation_errors(rgb: np.ndarray, overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidObservationError, match=message):
        obs(rgb, **overrides)


def _encode(img: Image.Image, fmt: str = "JPEG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def test_decode_jpeg_round_trip() -> None:
    arr = decode_image(_encode(Image.new("RGB", (40, 30), (200, 10, 10))))
    assert arr.shape == (30, 40, 3)
    assert arr.dtype == np.uint8
    assert abs(int(arr[0, 0, 0]) - 200) < 5


def test_decode_converts_grayscale_to_rgb() -> None:
    assert decode_image(_encode(Image.new("L", (8, 8)), "PNG")).shape == (8, 8, 3)


def test_decode_rejects_garbage() -> None:
    with pytest.raises(InvalidObservationError, match="could not be decoded"):
        decode_image(b"not a jpeg", camera="front")


def test_decode_rejects_oversized_before_decoding() -> None:
    data = _encode(Image.new("L", (MAX_IMAGE_SIDE_PX + 1, 1)), "PNG")
    with pytest.raises(InvalidObservationError, match="each side must be"):
        decode_image(data)


def test_model_info_accepts_matching(rgb: np.ndarray) -> None:
    INFO.check(obs(rgb, state=state(sensor_window=np.zeros((5, 2)))))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"images": {"wrist": np.zeros((32, 32, 3), np.uint8)}}, r"expects cameras \['front'\]"),
        ({"images": {"front": np.zeros((16, 32, 3), np.uint8)}}, "expects 32x32"),
        ({"state": state(joint_positions=[0.0] * 2, joint_velocities=[0.0] * 2)}, "3 joint"),
        ({"state": state()}, "needs a sensor_window"),
        ({"state": state(sensor_window=np.zeros((4, 2)))}, r"expects \(5, 2\)"),
        ({"embodiment": "unitree_h1"}, "supports embodiments"),
    ],
)
def test_model_info_errors(rgb: np.ndarray, overrides: dict[str, Any], message: str) -> None:
    base: dict[str, Any] = {"state": state(sensor_window=np.zeros((5, 2)))}
    with pytest.raises(InvalidObservationError, match=message):
        INFO.check(obs(rgb, **(base | overrides)))


def test_action_chunk_requires_2d() -> None:
    assert ActionChunk(np.zeros((4, 2), np.float32), "m").actions.dtype == np.float32
    with pytest.raises(ValueError, match="HxD"):
        ActionChunk(np.zeros(4, np.float32), "m")


@pytest.mark.parametrize(
    ("actions", "confidence"),
    [(np.full((4, 2), np.nan), None), (np.full((4, 2), np.inf), None), (np.zeros((4, 2)), np.nan)],
)
def test_action_chunk_refuses_non_finite_values(actions: np.ndarray, confidence: float) -> None:
    with pytest.raises(NonFiniteActionsError, match="model 'm' returned"):
        ActionChunk(actions.astype(np.float32), "m", confidence)


def test_model_info_refuses_states_outside_its_range(rgb: np.ndarray) -> None:
    bounded = dataclasses.replace(
        INFO, sensor_window=0, sensor_dim=0, state_low=(-1.0,) * 2 * J, state_high=(1.0,) * 2 * J
    )
    bounded.check(obs(rgb, state=state(joint_positions=[1.0, -1.0, 0.5])))
    too_fast = state(joint_velocities=[0.0, 1e20, 2.0])
    with pytest.raises(InvalidObservationError, match=r"joint_velocities\[1\] = 1e\+20 is outside"):
        bounded.check(obs(rgb, state=too_fast))
    with pytest.raises(ConfigError, match="state_low and state_high"):
        dataclasses.replace(bounded, state_high=(1.0,))


@pytest.mark.parametrize("field", ["camera", "embodiment"])
def test_names_longer_than_the_cap_are_refused_with_a_short_message(
    rgb: np.ndarray, field: str
) -> None:
    name = "x" * (MAX_NAME_CHARS + 1)
    overrides = {"images": {name: rgb}} if field == "camera" else {"embodiment": name}
    with pytest.raises(InvalidObservationError, match=f"{field} name 'x+… is longer") as err:
        obs(rgb, **overrides)
    assert len(str(err.value)) < 200
    obs(rgb, embodiment="x" * MAX_NAME_CHARS)  # at the cap: accepted
