"""Shared fixtures: tiny native policies of both families and matching observations."""

from collections.abc import Callable

import numpy as np
import pytest

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
