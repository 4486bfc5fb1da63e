"""The model-agnostic seam: every policy, native or adapted, implements these classes."""

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Self

import torch

from vlarena.policies.device import DeviceConfig
from vlarena.types import ActionChunk, ModelInfo, Observation, RobotState

Seeds = Sequence[int | None] | None  # one per observation; None draws from the policy's own RNG


@dataclass(frozen=True)
class VLFeatures:
    """Output of the slow vision-language stage for a batch, reusable by the fast stage."""

    tokens: torch.Tensor  # (B, N, d) feature tokens, on the policy's device
    padding: torch.Tensor  # (B, N) True where a token is padding
    model_id: str  # the model that produced them (features are model-specific)

    @property
    def batch_size(self) -> int:
        return int(self.tokens.shape[0])

    def select(self, index: int) -> "VLFeatures":
        """Features of one batch element, as a batch of one."""
        return VLFeatures(
            self.tokens[index : index + 1], self.padding[index : index + 1], self.model_id
        )


class Policy(ABC):
    """A VLA policy, here or remote: a batch of observations in, one chunk per observation out."""

    @property
    @abstractmethod
    def info(self) -> ModelInfo:
        """The model's input/output contract."""

    @abstractmethod
    def predict(
        self, observations: Sequence[Observation], seeds: Seeds = None
    ) -> list[ActionChunk]:
        """Predict one action chunk per observation."""

    def close(self) -> None:  # noqa: B027 (a no-op unless the policy holds something open)
        """Release what the policy holds open (a connection); a local policy holds nothing."""


class CheckpointPolicy(Policy):
    """A policy implementation that loads from a checkpoint directory (registered by type)."""

    policy_type: ClassVar[str]  # the name it is registered and written into checkpoints under

    @classmethod
    @abstractmethod
    def load(cls, path: Path, device: DeviceConfig) -> Self:
        """Load a checkpoint directory onto a device."""


class SplitPolicy(ABC):
    """Mixed into a Policy whose slow vision-language stage can run apart from its fast stage."""

    @abstractmethod
    def extract_features(self, observations: Sequence[Observation]) -> VLFeatures:
        """Run the slow stage on images and instructions."""

    @abstractmethod
    def predict_from_features(
        self, features: VLFeatures, states: Sequence[RobotState], seeds: Seeds = None
    ) -> list[ActionChunk]:
        """Run the fast stage on cached features and the newest proprioception/sensor input."""
