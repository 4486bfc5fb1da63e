"""Normalization statistics: fitting, validation and the tensor mappings."""

import dataclasses

import numpy as np
import pytest
import torch

from vlarena import ConfigError
from vlarena.policies.normalization import (
    NORM_STATS_JSON,
    STATE_LIMIT_MIN_HALF_RANGE,
    STATE_LIMIT_STDS,
    Normalizer,
    NormStats,
)


def test_from_data_fits_mean_std_and_percentiles() -> None:
    rng = np.random.default_rng(0)
    states = rng.normal(2.0, 3.0, (5000, 4))
    actions = rng.uniform(-5.0, 5.0, (5000, 2))
    stats = NormStats.from_data(states, actions, sensors=np.ones((5000, 3)))
    np.testing.assert_allclose(stats.state_mean, [2.0] * 4, atol=0.15)
    np.testing.assert_allclose(stats.state_std, [3.0] * 4, atol=0.15)
    np.testing.assert_allclose(stats.action_low, [-4.9] * 2, atol=0.1)
    np.testing.assert_allclose(stats.action_high, [4.9] * 2, atol=0.1)
    assert all(s > 0 for s in stats.sensor_std)  # constant channels get a floor, not zero
    assert NORM_STATS_JSON.loads(NORM_STATS_JSON.dumps(stats)) == stats


def test_normalizer_round_trips() -> None:
    stats = NormStats.from_data(np.zeros((2, 2)), np.array([[0.0, 10.0], [4.0, 30.0]]))
    norm = Normalizer(stats)
    x = torch.tensor([[1.0, 12.0], [3.0, 25.0]])
    torch.testing.assert_close(norm.actions_from_standard(norm.actions_to_standard(x)), x)
    torch.testing.assert_close(norm.actions_from_unit(norm.actions_to_unit(x)), x)
    assert norm.actions_to_unit(torch.tensor([stats.action_low])).tolist() == [[-1.0, -1.0]]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"state_std": (1.0,)}, "differ in length"),
        ({"action_std": (0.0, 1.0)}, "must be positive"),
        ({"action_mean": (float("nan"), 0.0)}, "must be finite"),
        ({"action_high": (-2.0, 1.0)}, "must exceed action_low"),
        ({"action_low": (0.0,)}, "as many values as action_mean"),
    ],
)
def test_invalid_stats(change: dict[str, tuple[float, ...]], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        dataclasses.replace(NormStats.identity(1, 2), **change)


def test_state_limits_are_generous_around_the_training_data() -> None:
    # A position of mean 1 and std 1, and a constant velocity (std ~0: the floor applies).
    stats = NormStats.from_data(states=[[0.0, 0.1], [2.0, 0.1]], actions=[[0.0], [1.0]])
    low, high = stats.state_limits()
    assert low[0] == pytest.approx(1.0 - STATE_LIMIT_STDS * 1.0)
    assert high[1] == pytest.approx(0.1 + STATE_LIMIT_MIN_HALF_RANGE)
