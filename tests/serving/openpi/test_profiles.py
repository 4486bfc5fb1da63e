"""Observation profiles: each maps its keys to an Observation and back."""

import numpy as np
import pytest

from vlarena.errors import InvalidObservationError, UnknownNameError
from vlarena.policies import PRESETS, FlowVLAPolicy
from vlarena.serving.openpi.profiles import PROFILES, get_profile
from vlarena.types import Observation, RobotState

INFO = FlowVLAPolicy.create(PRESETS["tiny"], "flow-tiny", seed=0).info


def observation() -> Observation:
    rng = np.random.default_rng(0)
    size = (INFO.image_height, INFO.image_width, 3)
    images = {c: rng.integers(0, 255, size, dtype=np.uint8) for c in INFO.camera_names}
    positions = np.concatenate([rng.uniform(-1, 1, 7), [0.01, 0.01]]).astype(np.float32)
    return Observation(images, RobotState(positions, np.zeros(9, np.float32)), "touch the red cube")


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_each_profile_round_trips_an_observation(name: str) -> None:
    obs = observation()
    back = get_profile(name).decode(get_profile(name).encode(obs), INFO)
    assert back.instruction == obs.instruction
    for camera in INFO.camera_names:
        np.testing.assert_array_equal(back.images[camera], obs.images[camera])
    np.testing.assert_allclose(back.state.joint_positions, obs.state.joint_positions, atol=1e-6)


def test_openpi_example_keys() -> None:
    libero = get_profile("libero").encode(observation())
    assert set(libero) == {
        "observation/image",
        "observation/wrist_image",
        "observation/state",
        "prompt",
    }
    droid = get_profile("droid").encode(observation())
    assert droid["observation/joint_position"].shape == (7,)
    assert droid["observation/gripper_position"] == pytest.approx([0.75])  # 1 cm of 4 open


def test_openpi_sized_images_are_fitted_to_the_model() -> None:
    message = get_profile("libero").encode(observation())
    message["observation/image"] = np.full((224, 224, 3), 200, np.uint8)
    message["observation/wrist_image"] = np.full((180, 320, 3), 200, np.uint8)  # wider: borders
    obs = get_profile("libero").decode(message, INFO)
    assert obs.images["front"].shape == (INFO.image_height, INFO.image_width, 3)
    assert obs.images["front"].min() == 200
    assert obs.images["wrist"][0].max() == 0
    assert obs.images["wrist"][INFO.image_height // 2].min() > 0


def test_libero_state_without_velocities() -> None:
    message = get_profile("libero").encode(observation())
    message["observation/state"] = message["observation/state"][:9]
    obs = get_profile("libero").decode(message, INFO)
    assert not obs.state.joint_velocities.any()
    message["observation/state"] = np.zeros(8)  # openpi's LIBERO end-effector state: not ours
    with pytest.raises(InvalidObservationError, match="9 joint positions"):
        get_profile("libero").decode(message, INFO)


def test_missing_keys_and_unknown_profiles_are_named() -> None:
    with pytest.raises(InvalidObservationError, match="lacks 'observation/image'"):
        get_profile("libero").decode({"prompt": "x"}, INFO)
    with pytest.raises(InvalidObservationError, match="'prompt' must be a string"):
        get_profile("droid").decode(
            get_profile("droid").encode(observation()) | {"prompt": 3}, INFO
        )
    with pytest.raises(UnknownNameError, match="valid: droid, libero, native"):
        get_profile("aloha")
