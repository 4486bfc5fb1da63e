"""What the two action heads share: conditioning on features, proprioception and sensing."""

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch import nn

from vlarena.policies.config import VLAConfig
from vlarena.policies.networks.attention import KV, ExpertDecoder


@dataclass(frozen=True)
class Conditioning:
    """Everything an action head attends to, computed once per call."""

    memory: list[KV]  # per decoder layer, cross-attention keys/values of the features
    memory_mask: torch.Tensor  # (B, 1, 1, N) True where a feature token may be attended
    prefix: torch.Tensor  # (B, P, e) proprioception (and sensor) tokens


class ActionHead(nn.Module, ABC):
    """The fast stage: features + fresh proprioception → a normalized action chunk."""

    unit_actions: bool  # True: actions normalized to [-1, 1]; False: standardized

    def __init__(self, cfg: VLAConfig) -> None:
        super().__init__()
        e = cfg.expert.d_model
        self.cfg = cfg
        self.memory_proj = nn.Linear(cfg.backbone.d_model, e)
        self.state_proj = nn.Linear(2 * cfg.state_dim, e)
        self.sensor_proj = (
            nn.Sequential(
                nn.Linear(cfg.sensor_window * cfg.sensor_dim, e), nn.GELU(), nn.Linear(e, e)
            )
            if cfg.sensor_window
            else None
        )
        self.decoder = ExpertDecoder(
            e, cfg.expert.n_layers, cfg.expert.n_heads, cfg.expert.mlp_ratio
        )

    @property
    def dtype(self) -> torch.dtype:
        """The precision of the head's weights (inputs are cast to it, results come back fp32)."""
        return self.memory_proj.weight.dtype

    def condition(
        self,
        features: torch.Tensor,
        feature_pad: torch.Tensor,
        state: torch.Tensor,
        sensor: torch.Tensor | None,
    ) -> Conditioning:
        """Project features and embed normalized state (B, 2J) and sensor window (B, T, D)."""
        prefix = [self.state_proj(state)[:, None]]
        if self.sensor_proj is not None and sensor is not None:
            prefix.append(self.sensor_proj(sensor.flatten(1))[:, None])
        memory = self.decoder.memory_kv(self.memory_proj(features))
        return Conditioning(memory, ~feature_pad[:, None, None, :], torch.cat(prefix, dim=1))

    @abstractmethod
    def draw_noise(self, generator: torch.Generator) -> torch.Tensor:
        """The random input one sample needs, drawn on the CPU (identical on every device)."""

    @abstractmethod
    def loss(self, cond: Conditioning, actions: torch.Tensor) -> torch.Tensor:
        """Training loss (float32) for normalized float32 target actions (B, H, D)."""

    @abstractmethod
    def sample(
        self, cond: Conditioning, noise: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Normalized float32 actions (B, H, D) and optional confidence (B,) from float32 noise."""
