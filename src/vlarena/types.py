"""Core value types: what goes into a policy (Observation) and what comes out (ActionChunk).

Every type validates itself on construction and raises InvalidObservationError with a message a
client can act on; model-specific checks (camera names, image size, joint count) live in
ModelInfo.check.
"""

import io
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image, UnidentifiedImageError

from vlarena.errors import ConfigError, InvalidObservationError, NonFiniteActionsError, echo

MAX_IMAGE_SIDE_PX = 4096  # larger camera images are refused before any work is done on them
MAX_CAMERAS = 8
MAX_JOINTS = 64
MAX_SENSOR_SAMPLES = 8192
MAX_SENSOR_CHANNELS = 64
MAX_INSTRUCTION_BYTES = 1024
MAX_NAME_CHARS = 128  # camera, embodiment and model names

FloatArray = NDArray[np.float32]
ImageArray = NDArray[np.uint8]


def _finite_array(name: str, value: Any, limits: tuple[int, ...]) -> FloatArray:
    """A float32 array with len(limits) dimensions, each of size 1..limit, all values finite."""
    try:
        arr = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise InvalidObservationError(f"{name} must be numeric: {exc}") from None
    if arr.ndim != len(limits):
        raise InvalidObservationError(
            f"{name} must have {len(limits)} dimension(s), got shape {arr.shape}"
        )
    if not all(0 < size <= limit for size, limit in zip(arr.shape, limits, strict=True)):
        raise InvalidObservationError(
            f"{name} has shape {arr.shape}; each dimension must be 1..limit {limits}"
        )
    if not np.isfinite(arr).all():
        raise InvalidObservationError(f"{name} contains NaN or inf")
    return arr


def check_name_length(kind: str, name: str) -> None:
    """Raise InvalidObservationError if a (camera, embodiment, model) name is too long."""
    if len(name) > MAX_NAME_CHARS:
        raise InvalidObservationError(
            f"{kind} name {echo(name)} is longer than {MAX_NAME_CHARS} characters"
        )


def as_image(camera: str, value: Any) -> ImageArray:
    """`value` as an RGB uint8 HxWx3 image (InvalidObservationError if it is not one)."""
    arr = np.asarray(value)
    if arr.dtype != np.uint8:
        raise InvalidObservationError(f"image {echo(camera)} must be uint8, got {arr.dtype}")
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise InvalidObservationError(
            f"image {echo(camera)} must be HxWx3 (RGB), got shape {arr.shape}"
        )
    _check_image_size(camera, *arr.shape[:2])
    return arr


def _check_image_size(camera: str, height: int, width: int) -> None:
    if not (0 < height <= MAX_IMAGE_SIDE_PX and 0 < width <= MAX_IMAGE_SIDE_PX):
        raise InvalidObservationError(
            f"image {echo(camera)} is {height}x{width}; each side must be 1..{MAX_IMAGE_SIDE_PX} px"
        )


def decode_image(
    data: bytes, camera: str = "image", expected_size: tuple[int, int] | None = None
) -> ImageArray:
    """Decode JPEG/PNG bytes to RGB uint8 HxWx3, checking the header's size before decoding.

    `expected_size` (height, width), if given, must match: a wrong-size image is refused
    without spending memory on decoding it.
    """
    try:
        with Image.open(io.BytesIO(data), formats=("JPEG", "PNG")) as img:
            _check_image_size(camera, img.height, img.width)
            if expected_size is not None and (img.height, img.width) != expected_size:
                raise InvalidObservationError(
                    f"image {echo(camera)} is {img.height}x{img.width}, model expects "
                    f"{expected_size[0]}x{expected_size[1]}"
                )
            return np.asarray(img.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        if isinstance(exc, InvalidObservationError):
            raise
        raise InvalidObservationError(
            f"image {echo(camera)} could not be decoded: {echo(str(exc))}"
        ) from None


@dataclass(frozen=True)
class RobotState:
    """Proprioception and high-rate sensing at one instant: the fast input of a policy."""

    joint_positions: FloatArray  # (J,) joint positions, radians / metres
    joint_velocities: FloatArray  # (J,) joint velocities, same units per second
    sensor_window: FloatArray | None = None  # (T, D) newest T samples of a high-rate sensor

    def __post_init__(self) -> None:
        pos = _finite_array("joint_positions", self.joint_positions, (MAX_JOINTS,))
        vel = _finite_array("joint_velocities", self.joint_velocities, (MAX_JOINTS,))
        if vel.shape != pos.shape:
            raise InvalidObservationError(
                f"joint_velocities has {vel.shape[0]} values, joint_positions {pos.shape[0]}"
            )
        object.__setattr__(self, "joint_positions", pos)
        object.__setattr__(self, "joint_velocities", vel)
        if self.sensor_window is not None:
            limits = (MAX_SENSOR_SAMPLES, MAX_SENSOR_CHANNELS)
            window = _finite_array("sensor_window (TxD)", self.sensor_window, limits)
            object.__setattr__(self, "sensor_window", window)


@dataclass(frozen=True)
class Observation:
    """Everything a policy sees at one control step."""

    images: Mapping[str, ImageArray]  # camera name -> RGB uint8 HxWx3
    state: RobotState  # proprioception and optional sensor window
    instruction: str  # natural-language task, e.g. "pick up the red cube"
    embodiment: str = "franka"  # robot tag the policy must support
    timestamp_s: float = 0.0  # capture time on the robot's clock
    # The model contract this observation passed (ModelInfo.check): it is not checked again.
    checked_against: "ModelInfo | None" = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.state, RobotState):
            raise InvalidObservationError("state must be a RobotState")
        if not isinstance(self.embodiment, str) or not self.embodiment:
            raise InvalidObservationError("embodiment must be a non-empty string")
        if not isinstance(self.images, Mapping) or not self.images:
            raise InvalidObservationError("images must map camera names to at least one image")
        if len(self.images) > MAX_CAMERAS:
            raise InvalidObservationError(f"at most {MAX_CAMERAS} cameras, got {len(self.images)}")
        if not all(isinstance(name, str) and name for name in self.images):
            raise InvalidObservationError("camera names must be non-empty strings")
        for name in self.images:
            check_name_length("camera", name)
        check_name_length("embodiment", self.embodiment)
        images = {name: as_image(name, img) for name, img in self.images.items()}
        object.__setattr__(self, "images", MappingProxyType(images))
        if not isinstance(self.instruction, str) or not self.instruction.strip():
            raise InvalidObservationError("instruction must be a non-empty string")
        try:
            size = len(self.instruction.encode("utf-8"))
        except UnicodeEncodeError:
            raise InvalidObservationError("instruction is not valid Unicode text") from None
        if size > MAX_INSTRUCTION_BYTES:
            raise InvalidObservationError(
                f"instruction is longer than {MAX_INSTRUCTION_BYTES} bytes"
            )
        timestamp = self.timestamp_s
        if isinstance(timestamp, bool) or not isinstance(timestamp, int | float):
            raise InvalidObservationError("timestamp_s must be a number")
        if not np.isfinite(timestamp):
            raise InvalidObservationError("timestamp_s must be finite")


# The layers that time a chunk on its way back, innermost first; each records its own entry once.
TIMING_LAYERS = (
    "policy",  # the policy call that produced it (for a batch: the whole batch's call)
    "queue",  # waiting in the server's batching queue
    "server",  # the server, from receiving the request to answering it
    "round_trip",  # the client, from sending the request to decoding the answer
)


@dataclass(frozen=True)
class ActionChunk:
    """H future actions of D dimensions each, predicted from one observation, with how each
    layer it passed through timed it."""

    actions: FloatArray  # (H, D) in the robot's action units (unnormalized)
    model_id: str  # name of the model that produced it
    confidence: float | None = None  # model's own confidence in [0, 1], if it has one
    timing_ms: Mapping[str, float] = field(default_factory=dict)  # TIMING_LAYERS → milliseconds
    batch_size: int = 1  # requests in the batch it was predicted in
    feature_version: int = 0  # dual-rate: the feature refresh behind it (0: fresh features)
    feature_age_ms: float = 0.0  # dual-rate: age of those features' observation
    sequence: int = 0  # streams: the sequence number of the observation it answers

    def __post_init__(self) -> None:
        actions = np.asarray(self.actions, dtype=np.float32)
        if actions.ndim != 2:
            raise ValueError(f"actions must be HxD, got shape {actions.shape}")
        if not np.isfinite(actions).all():
            raise NonFiniteActionsError(
                f"model {echo(self.model_id)} returned actions of shape {actions.shape} with "
                "NaN or inf values"
            )
        if self.confidence is not None and not math.isfinite(self.confidence):
            raise NonFiniteActionsError(
                f"model {echo(self.model_id)} returned a confidence of {self.confidence}"
            )
        object.__setattr__(self, "actions", actions)
        object.__setattr__(self, "timing_ms", MappingProxyType(dict(self.timing_ms)))

    @property
    def latency_ms(self) -> float:
        """The outermost layer's time: how long the caller waited for this chunk (0: untimed)."""
        return next(
            (self.timing_ms[k] for k in reversed(TIMING_LAYERS) if k in self.timing_ms), 0.0
        )

    def timed(self, layer: str, ms: float, **changes: Any) -> "ActionChunk":
        """This chunk with `layer`'s entry added (and `changes` applied); never overwrites."""
        if layer not in TIMING_LAYERS:
            raise ValueError(f"unknown timing layer {layer!r}; valid: {', '.join(TIMING_LAYERS)}")
        if layer in self.timing_ms:
            raise ValueError(f"the {layer!r} layer has already timed this chunk")
        return replace(self, timing_ms={**self.timing_ms, layer: ms}, **changes)


@dataclass(frozen=True)
class ModelInfo:
    """The input/output contract of a model: what it expects and what it returns."""

    name: str  # model id, e.g. "vla-flow-small"
    version: str  # model version string
    policy_type: str  # registered policy implementation, e.g. "vla-flow"
    action_dim: int  # D, dimensions of one action
    chunk_size: int  # H, actions per chunk
    camera_names: tuple[str, ...]  # cameras expected in every observation
    image_height: int  # expected image height in pixels
    image_width: int  # expected image width in pixels
    state_dim: int  # J, joint positions (and velocities) per observation
    sensor_window: int = 0  # T, sensor samples per observation (0: no sensor input)
    sensor_dim: int = 0  # D, sensor channels (0: no sensor input)
    embodiments: tuple[str, ...] = ("franka",)  # robot tags the model was trained for
    supports_split: bool = False  # features and actions can run apart (dual-rate)
    num_params: int = 0  # parameter count
    # The joint values an observation may carry: (2J,) positions then velocities, in the
    # state's units; () for any finite value. Values outside are physically absurd for the
    # robot and far outside what the model was trained on (its output would be meaningless).
    state_low: tuple[float, ...] = ()
    state_high: tuple[float, ...] = ()
    # Its card, a JSON object for people: "trained" (a summary), "license", "source",
    # "evaluated" and "evaluation" (per-task success); "": none.
    card: str = ""

    def __post_init__(self) -> None:
        sizes = {len(self.state_low), len(self.state_high)}
        if sizes not in ({0}, {2 * self.state_dim}):
            raise ConfigError(
                f"state_low and state_high must both have 2 x {self.state_dim} values or none"
            )

    def check(self, obs: Observation) -> None:
        """Raise InvalidObservationError unless `obs` matches this contract (once: an
        observation remembers the contract it passed, so later layers do not re-check it)."""
        if obs.checked_against == self:
            return
        if set(obs.images) != set(self.camera_names):
            raise InvalidObservationError(
                f"model {self.name!r} expects cameras {sorted(self.camera_names)}, "
                f"got {echo(sorted(obs.images))}"
            )
        for camera, img in obs.images.items():
            if img.shape[:2] != (self.image_height, self.image_width):
                raise InvalidObservationError(
                    f"image {echo(camera)} is {img.shape[0]}x{img.shape[1]}, model {self.name!r} "
                    f"expects {self.image_height}x{self.image_width}"
                )
        self.check_state(obs.state)
        if obs.embodiment not in self.embodiments:
            raise InvalidObservationError(
                f"model {self.name!r} supports embodiments {list(self.embodiments)}, "
                f"got {echo(obs.embodiment)}"
            )
        object.__setattr__(obs, "checked_against", self)

    def _check_state_range(self, values: FloatArray) -> None:
        low, high = np.asarray(self.state_low), np.asarray(self.state_high)
        outside = np.flatnonzero((values < low) | (values > high))
        if outside.size:
            i = int(outside[0])
            field, joint = (
                ("joint_positions", i)
                if i < self.state_dim
                else ("joint_velocities", i - self.state_dim)
            )
            raise InvalidObservationError(
                f"{field}[{joint}] = {values[i]:g} is outside [{low[i]:g}, {high[i]:g}], the "
                f"range model {self.name!r} accepts ({outside.size} value(s) outside)"
            )

    def check_state(self, state: RobotState) -> None:
        """Raise InvalidObservationError unless `state` matches this contract."""
        joints = state.joint_positions.shape[0]
        if joints != self.state_dim:
            raise InvalidObservationError(
                f"model {self.name!r} expects {self.state_dim} joint values, got {joints}"
            )
        if self.state_low:
            self._check_state_range(np.concatenate([state.joint_positions, state.joint_velocities]))
        if self.sensor_window == 0:
            return
        expected = (self.sensor_window, self.sensor_dim)
        if state.sensor_window is None:
            raise InvalidObservationError(
                f"model {self.name!r} needs a sensor_window of shape {expected}"
            )
        if state.sensor_window.shape != expected:
            raise InvalidObservationError(
                f"sensor_window has shape {state.sensor_window.shape}, model {self.name!r} "
                f"expects {expected}"
            )
