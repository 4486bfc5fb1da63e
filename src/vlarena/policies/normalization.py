"""Normalization statistics stored with a checkpoint, and the module that applies them."""

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import ArrayLike
from torch import nn

from vlarena.errors import ConfigError
from vlarena.policies.schema import STRICT_JSON, JsonCodec

_EPS = 1e-6
# The joint values a model accepts: its training mean ± the larger of STATE_LIMIT_STDS standard
# deviations and STATE_LIMIT_MIN_HALF_RANGE (in the joint's units: rad or m, and per second).
# Generous: every state the robot can reach passes (the Panda's joints span at most 3.8 rad and
# move at most 2.6 rad/s); a finite but absurd value (1e20) would make the network's output NaN.
STATE_LIMIT_STDS = 100.0
STATE_LIMIT_MIN_HALF_RANGE = 10.0


@dataclass(frozen=True)
class NormStats:
    """Statistics of states, actions and sensor samples in the training data."""

    __pydantic_config__ = STRICT_JSON

    state_mean: tuple[float, ...]  # (2J,) joint positions then velocities
    state_std: tuple[float, ...]  # (2J,)
    # Actions: per dimension (D,), or per chunk step and dimension (H·D,), step-major.
    action_mean: tuple[float, ...]  # flow family: actions are standardized
    action_std: tuple[float, ...]
    action_low: tuple[float, ...]  # autoregressive family: 1st percentile → bin 0
    action_high: tuple[float, ...]  # 99th percentile → last bin
    sensor_mean: tuple[float, ...] = ()  # (sensor channels,) empty when no sensor
    sensor_std: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        pairs = [
            ("state", self.state_mean, self.state_std),
            ("action", self.action_mean, self.action_std),
            ("sensor", self.sensor_mean, self.sensor_std),
        ]
        for name, mean, std in pairs:
            if len(mean) != len(std):
                raise ConfigError(f"{name}_mean and {name}_std differ in length")
            if not all(s > 0 for s in std):
                raise ConfigError(f"{name}_std must be positive")
        values = np.array(
            [v for field in dataclasses.fields(self) for v in getattr(self, field.name)], float
        )
        if not np.isfinite(values).all():
            raise ConfigError("normalization stats must be finite")
        if len(self.action_low) != len(self.action_mean) or len(self.action_high) != len(
            self.action_mean
        ):
            raise ConfigError("action_low/high must have as many values as action_mean")
        if any(hi <= lo for lo, hi in zip(self.action_low, self.action_high, strict=True)):
            raise ConfigError("action_high must exceed action_low in every dimension")

    def state_limits(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """The lowest and highest joint values a model trained on these statistics accepts."""
        mean = np.asarray(self.state_mean)
        half = np.maximum(STATE_LIMIT_STDS * np.asarray(self.state_std), STATE_LIMIT_MIN_HALF_RANGE)
        return tuple((mean - half).tolist()), tuple((mean + half).tolist())

    @classmethod
    def identity(cls, state_dim: int, action_dim: int, sensor_dim: int = 0) -> "NormStats":
        """Statistics that leave values unchanged (actions binned over [-1, 1])."""
        return cls(
            state_mean=(0.0,) * 2 * state_dim,
            state_std=(1.0,) * 2 * state_dim,
            action_mean=(0.0,) * action_dim,
            action_std=(1.0,) * action_dim,
            action_low=(-1.0,) * action_dim,
            action_high=(1.0,) * action_dim,
            sensor_mean=(0.0,) * sensor_dim,
            sensor_std=(1.0,) * sensor_dim,
        )

    @classmethod
    def from_data(
        cls, states: ArrayLike, actions: ArrayLike, sensors: ArrayLike | None = None
    ) -> "NormStats":
        """Fit statistics to arrays of shape (N, 2J), (N, D) and optionally (N, sensor channels)."""

        def mean_std(x: ArrayLike) -> tuple[tuple[float, ...], tuple[float, ...]]:
            arr = np.asarray(x, dtype=np.float64)
            return tuple(arr.mean(0).tolist()), tuple(np.maximum(arr.std(0), _EPS).tolist())

        acts = np.asarray(actions, dtype=np.float64)
        low, high = np.percentile(acts, 1, axis=0), np.percentile(acts, 99, axis=0)
        high = np.maximum(high, low + _EPS)
        state_mean, state_std = mean_std(states)
        action_mean, action_std = mean_std(acts)
        sensor_mean, sensor_std = mean_std(sensors) if sensors is not None else ((), ())
        return cls(
            state_mean=state_mean,
            state_std=state_std,
            action_mean=action_mean,
            action_std=action_std,
            action_low=tuple(low.tolist()),
            action_high=tuple(high.tolist()),
            sensor_mean=sensor_mean,
            sensor_std=sensor_std,
        )


NORM_STATS_JSON = JsonCodec(NormStats, "normalization stats")


class Normalizer(nn.Module):
    """Applies NormStats to tensors on the model's device (always in float32); action stats
    broadcast over (B, H, D) chunks, whether per dimension or per chunk step and dimension."""

    state_mean: torch.Tensor
    state_std: torch.Tensor
    action_mean: torch.Tensor
    action_std: torch.Tensor
    action_low: torch.Tensor
    action_high: torch.Tensor
    sensor_mean: torch.Tensor
    sensor_std: torch.Tensor

    def __init__(self, stats: NormStats, action_dim: int | None = None) -> None:
        super().__init__()
        for name in (
            "state_mean",
            "state_std",
            "action_mean",
            "action_std",
            "action_low",
            "action_high",
            "sensor_mean",
            "sensor_std",
        ):
            values = torch.tensor(getattr(stats, name), dtype=torch.float32)
            if name.startswith("action_") and action_dim is not None:
                values = values.view(-1, action_dim)  # (1 or H, D)
            self.register_buffer(name, values, persistent=False)

    def state(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.state_mean) / self.state_std

    def sensor(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.sensor_mean) / self.sensor_std

    def actions_to_standard(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.action_mean) / self.action_std

    def actions_from_standard(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.action_std + self.action_mean

    def actions_to_unit(self, x: torch.Tensor) -> torch.Tensor:
        """Map [low, high] to [-1, 1] (outliers fall outside)."""
        return 2 * (x - self.action_low) / (self.action_high - self.action_low) - 1

    def actions_from_unit(self, x: torch.Tensor) -> torch.Tensor:
        return (x + 1) / 2 * (self.action_high - self.action_low) + self.action_low
