"""Synthetic observations that match a model's contract (demos, warmup, benchmarks, tests)."""

import numpy as np

from vlarena.types import ModelInfo, Observation, RobotState


def synthetic_observation(
    info: ModelInfo, seed: int = 0, instruction: str = "pick up the red cube"
) -> Observation:
    """A random but valid observation for `info`, reproducible from `seed`."""
    rng = np.random.default_rng(seed)
    shape = (info.image_height, info.image_width, 3)
    images = {name: rng.integers(0, 256, shape, dtype=np.uint8) for name in info.camera_names}
    sensor = (
        rng.standard_normal((info.sensor_window, info.sensor_dim)).astype(np.float32)
        if info.sensor_window
        else None
    )
    state = RobotState(
        joint_positions=rng.uniform(-1, 1, info.state_dim).astype(np.float32),
        joint_velocities=rng.uniform(-0.1, 0.1, info.state_dim).astype(np.float32),
        sensor_window=sensor,
    )
    return Observation(images, state, instruction, embodiment=info.embodiments[0])
