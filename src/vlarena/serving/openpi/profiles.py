"""Observation profiles: which keys of an openpi-protocol observation carry what.

A profile turns a received observation dict into an `Observation` for a model (server side) and
an `Observation` into the dict a server of that layout expects (client side). Clients built for
openpi's examples send 224x224 images; the LIBERO and DROID profiles resize an image of another
size to the model's, keeping its aspect (black borders), as openpi's own input transforms do.
"""

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
from PIL import Image, ImageOps

from vlarena.errors import InvalidObservationError, UnknownNameError, echo
from vlarena.sim.world import CAMERAS
from vlarena.types import FloatArray, ImageArray, ModelInfo, Observation, RobotState, as_image

PANDA_FINGER_OPEN_M = 0.04  # travel of each Panda finger slide: DROID's gripper 0 (open) here
Message = dict[str, Any]


class ObservationProfile(ABC):
    """A layout of observation keys, both ways."""

    name: ClassVar[str]

    @abstractmethod
    def decode(self, message: Mapping[Any, Any], info: ModelInfo) -> Observation:
        """A received observation dict, as the observation `info`'s model takes."""

    @abstractmethod
    def encode(self, obs: Observation) -> Message:
        """An observation as the dict a server of this layout expects."""

    def cameras(self, info: ModelInfo) -> tuple[str, ...]:
        """Our camera names, in the order this profile's image keys carry them."""
        return info.camera_names


def _get(message: Mapping[Any, Any], key: str, profile: str) -> Any:
    if key not in message:
        keys = sorted(str(k) for k in message)[:16]
        raise InvalidObservationError(
            f"observation lacks {key!r} (profile {profile!r}); it has {echo(keys, 300)}"
        )
    return message[key]


def _text(message: Mapping[Any, Any], key: str, profile: str) -> str:
    value = _get(message, key, profile)
    if not isinstance(value, str):
        raise InvalidObservationError(f"{key!r} must be a string, got {type(value).__name__}")
    return value


def _vector(message: Mapping[Any, Any], key: str, profile: str) -> FloatArray:
    value = _get(message, key, profile)
    if not isinstance(value, np.ndarray | list | tuple):
        raise InvalidObservationError(f"{key!r} must be an array, got {type(value).__name__}")
    try:
        arr = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError):
        raise InvalidObservationError(f"{key!r} must be numeric") from None
    return arr.reshape(-1) if arr.ndim == 2 and 1 in arr.shape else arr


def _fitted(key: str, value: Any, info: ModelInfo) -> ImageArray:
    """An image, resized with black borders to the model's size if it has another."""
    image = as_image(key, value)
    size = (info.image_width, info.image_height)
    if image.shape[:2] == size[::-1]:
        return image
    resized = ImageOps.pad(Image.fromarray(image), size, Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.uint8)


class NativeProfile(ObservationProfile):
    """Our own layout: the gRPC Observation's field names, images keyed by camera."""

    name = "native"

    def decode(self, message: Mapping[Any, Any], info: ModelInfo) -> Observation:
        images = _get(message, "images", self.name)
        if not isinstance(images, dict):
            raise InvalidObservationError("'images' must map camera names to images")
        sensor = message.get("sensor_window")
        state = RobotState(
            _vector(message, "joint_positions", self.name),
            _vector(message, "joint_velocities", self.name),
            None if sensor is None else _vector(message, "sensor_window", self.name),
        )
        timestamp = message.get("client_timestamp", 0.0)
        obs = Observation(
            images={str(k): v for k, v in images.items()},
            state=state,
            instruction=_text(message, "language_instruction", self.name),
            embodiment=message.get("embodiment_tag") or info.embodiments[0],
            timestamp_s=timestamp,
        )
        info.check(obs)
        return obs

    def encode(self, obs: Observation) -> Message:
        message: Message = {
            "images": dict(obs.images),
            "joint_positions": obs.state.joint_positions,
            "joint_velocities": obs.state.joint_velocities,
            "language_instruction": obs.instruction,
            "embodiment_tag": obs.embodiment,
            "client_timestamp": obs.timestamp_s,
        }
        if obs.state.sensor_window is not None:
            message["sensor_window"] = obs.state.sensor_window
        return message


class TwoCameraProfile(ObservationProfile):
    """openpi's example layouts: a scene camera and a wrist camera, a prompt, robot state."""

    image_keys: ClassVar[tuple[str, str]]  # the keys of our `front` and `wrist` cameras
    our_cameras = CAMERAS

    def cameras(self, info: ModelInfo) -> tuple[str, ...]:
        return self.our_cameras

    def decode(self, message: Mapping[Any, Any], info: ModelInfo) -> Observation:
        carried = dict(zip(self.our_cameras, self.image_keys, strict=True))
        missing = [c for c in info.camera_names if c not in carried]
        if missing:
            raise InvalidObservationError(
                f"profile {self.name!r} carries cameras {list(carried)}; model {info.name!r} "
                f"also needs {missing}"
            )
        images = {
            c: _fitted(carried[c], _get(message, carried[c], self.name), info)
            for c in info.camera_names
        }
        obs = Observation(
            images, self.decode_state(message, info), _text(message, "prompt", self.name)
        )
        info.check(obs)
        return obs

    def encode(self, obs: Observation) -> Message:
        message: Message = {
            key: obs.images[camera]
            for camera, key in zip(self.our_cameras, self.image_keys, strict=True)
            if camera in obs.images
        }
        return message | self.encode_state(obs.state) | {"prompt": obs.instruction}

    @abstractmethod
    def decode_state(self, message: Mapping[Any, Any], info: ModelInfo) -> RobotState:
        """The robot state the message's state keys hold."""

    @abstractmethod
    def encode_state(self, state: RobotState) -> Message:
        """A robot state as this layout's state keys."""


class LiberoProfile(TwoCameraProfile):
    """openpi's LIBERO example: `observation/image`, `observation/wrist_image`,
    `observation/state` (joint positions, optionally followed by velocities), `prompt`."""

    name = "libero"
    image_keys = ("observation/image", "observation/wrist_image")

    def decode_state(self, message: Mapping[Any, Any], info: ModelInfo) -> RobotState:
        state = _vector(message, "observation/state", self.name)
        joints = info.state_dim
        if state.shape == (2 * joints,):
            return RobotState(state[:joints], state[joints:])
        if state.shape == (joints,):
            return RobotState(state, np.zeros_like(state))
        raise InvalidObservationError(
            f"'observation/state' has shape {state.shape}; model {info.name!r} takes {joints} "
            f"joint positions, optionally followed by {joints} velocities"
        )

    def encode_state(self, state: RobotState) -> Message:
        return {
            "observation/state": np.concatenate([state.joint_positions, state.joint_velocities])
        }


class DroidProfile(TwoCameraProfile):
    """openpi's DROID example: `observation/exterior_image_1_left`, `observation/wrist_image_left`,
    `observation/joint_position` (7 arm joints), `observation/gripper_position` (0 open, 1
    closed; both Panda finger slides), `prompt`."""

    name = "droid"
    image_keys = ("observation/exterior_image_1_left", "observation/wrist_image_left")
    arm_joints = 7

    def decode_state(self, message: Mapping[Any, Any], info: ModelInfo) -> RobotState:
        arm = _vector(message, "observation/joint_position", self.name)
        grip = _vector(message, "observation/gripper_position", self.name)
        if arm.shape != (self.arm_joints,) or grip.shape != (1,):
            raise InvalidObservationError(
                f"DROID state is 7 joint positions and 1 gripper position, got shapes "
                f"{arm.shape} and {grip.shape}"
            )
        finger = (1.0 - float(np.clip(grip[0], 0.0, 1.0))) * PANDA_FINGER_OPEN_M
        positions = np.concatenate([arm, np.full(info.state_dim - self.arm_joints, finger)])
        return RobotState(positions.astype(np.float32), np.zeros_like(positions))

    def encode_state(self, state: RobotState) -> Message:
        fingers = state.joint_positions[self.arm_joints :]
        closed = 1.0 - float(np.mean(fingers)) / PANDA_FINGER_OPEN_M if fingers.size else 0.0
        return {
            "observation/joint_position": state.joint_positions[: self.arm_joints],
            "observation/gripper_position": np.array([np.clip(closed, 0.0, 1.0)], np.float32),
        }


PROFILES: dict[str, ObservationProfile] = {
    p.name: p for p in (NativeProfile(), LiberoProfile(), DroidProfile())
}


def get_profile(name: str) -> ObservationProfile:
    """The profile registered as `name`; unknown names list the valid ones."""
    try:
        return PROFILES[name]
    except KeyError:
        raise UnknownNameError("observation profile", name, PROFILES) from None
