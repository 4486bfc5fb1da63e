"""Shared fixtures: tiny native policies of both families and matching observations."""

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from vlarena.data import TASK_NAMES, DatagenConfig, generate
from vlarena.policies import PRESETS, NativeVLAPolicy, get_policy_type
from vlarena.policies.synthetic import synthetic_observation
from vlarena.types import ModelInfo, Observation

FAMILIES = ["vla-flow", "vla-ar"]


@pytest.fixture(params=FAMILIES)
def family(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def tiny_policy(family: str) -> NativeVLAPolicy:
    cls = get_policy_type(family)
    assert issubclass(cls, NativeVLAPolicy)
    return cls.create(PRESETS["tiny"], f"{family}-tiny", seed=0)


@pytest.fixture
def make_obs() -> Callable[..., Observation]:
    def make(
        info: ModelInfo, seed: int = 0, instruction: str = "pick up the red cube"
    ) -> Observation:
        return synthetic_observation(info, seed=seed, instruction=instruction)

    return make


@pytest.fixture
def rgb() -> np.ndarray:
    return np.zeros((32, 32, 3), dtype=np.uint8)


@pytest.fixture(scope="session")
def demo_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small real dataset: one expert episode of every task at 32x32 (the tiny preset's size)."""
    path = tmp_path_factory.mktemp("demos") / "demos"
    generate(DatagenConfig(episodes=len(TASK_NAMES), image_size=32, workers=0), path)
    return path
