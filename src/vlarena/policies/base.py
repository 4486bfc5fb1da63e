"""The model-agnostic seam: every policy, native or adapted, implements these classes."""

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Self

import torch

from vlarena.errors import InvalidObservationError
from vlarena.policies.device import DeviceConfig
from vlarena.types import ActionChunk, ModelInfo, Observation, RobotState

Seeds = Sequence[int | None] | None  # one per observation; None draws from the policy's own RNG
MAX_SEED = 2**63 - 1


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


class SeededNoise:
    """Per-sample noise, each drawn from its own seed (None: from this stream), so batching
    never changes a result."""

    def __init__(self, seed: int = 0) -> None:
        self._stream = torch.Generator().manual_seed(seed)
        self._lock = threading.Lock()  # the stream is shared by the threads calling a policy

    def draw(
        self, sample: Callable[[torch.Generator], torch.Tensor], seeds: Seeds, batch: int
    ) -> torch.Tensor:
        """`sample` once per observation, stacked (B, ...) on the CPU."""
        with self._lock:
            draws = [
                sample(self._stream if s is None else torch.Generator().manual_seed(s))
                for s in seeds or [None] * batch
            ]
        return torch.stack(draws)


def check_batch(name: str, items: object, kind: type) -> None:
    """Raise InvalidObservationError unless `items` is a non-empty list of `kind`."""
    if not isinstance(items, Sequence) or isinstance(items, str):
        raise InvalidObservationError(f"{name} must be a list of {kind.__name__}")
    if not items:
        raise InvalidObservationError(f"empty batch of {name}")
    if not all(isinstance(item, kind) for item in items):
        raise InvalidObservationError(f"every item of {name} must be a {kind.__name__}")


def check_seeds(seeds: Seeds, batch: int) -> None:
    """Raise InvalidObservationError unless `seeds` is None or one valid seed per item."""
    if seeds is None:
        return
    if not isinstance(seeds, Sequence) or len(seeds) != batch:
        raise InvalidObservationError(f"seeds must be a list of {batch} (one per observation)")
    for seed in seeds:
        valid_int = isinstance(seed, int) and not isinstance(seed, bool) and 0 <= seed <= MAX_SEED
        if seed is not None and not valid_int:
            raise InvalidObservationError(f"seed {seed!r} is not an integer in 0..2**63-1")
