"""Flow-matching action expert (the pi0 / SmolVLA / GR00T family).

Training interpolates x_t = t·noise + (1 - t)·actions and regresses the velocity noise - actions;
inference integrates from pure noise (t = 1) to actions (t = 0) with `flow_steps` Euler steps.
"""

import math

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from vlarena.policies.config import VLAConfig
from vlarena.policies.networks.heads import ActionHead, Conditioning


def time_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding (B, dim) of flow times t in [0, 1] (B,)."""
    half = dim // 2
    freqs = torch.exp(-math.log(1000.0) * torch.arange(half, device=t.device) / half)
    angles = 1000.0 * t[:, None].float() * freqs[None]
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


class FlowExpert(ActionHead):
    """Denoises an HxD action chunk conditioned on features and proprioception."""

    unit_actions = False

    def __init__(self, cfg: VLAConfig) -> None:
        super().__init__(cfg)
        e = cfg.expert.d_model
        self.action_in = nn.Linear(cfg.action_dim, e)
        self.time_mix = nn.Sequential(nn.Linear(2 * e, e), nn.SiLU(), nn.Linear(e, e))
        self.action_pos = nn.Parameter(torch.randn(1, cfg.chunk_size, e) * 0.02)
        self.action_out = nn.Linear(e, cfg.action_dim)

    def forward(self, cond: Conditioning, x_t: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
        """Velocity field v(x_t, t) (B, H, D), given `times` = time_embedding(t) (B, e)."""
        actions = self.action_in(x_t)
        mixed = torch.cat([actions, times[:, None].expand_as(actions)], dim=-1)
        seq = torch.cat([cond.prefix, self.time_mix(mixed) + self.action_pos], dim=1)
        out, _ = self.decoder(seq, cond.memory, cond.memory_mask)
        return self.action_out(out[:, cond.prefix.shape[1] :])

    def draw_noise(self, generator: torch.Generator) -> torch.Tensor:
        return torch.randn(self.cfg.chunk_size, self.cfg.action_dim, generator=generator)

    def loss(self, cond: Conditioning, actions: torch.Tensor) -> torch.Tensor:
        noise = torch.randn_like(actions)
        # pi0's Beta(1.5, 1) emphasis on noisy times; mapped to [0.001, 1].
        t = torch.distributions.Beta(1.5, 1.0).sample((actions.shape[0],)).to(actions.device)
        t = 0.999 * t + 0.001
        x_t = t[:, None, None] * noise + (1 - t[:, None, None]) * actions
        times = time_embedding(t, self.cfg.expert.d_model)
        velocity = self(cond, x_t.to(self.dtype), times.to(self.dtype))
        return F.mse_loss(velocity.float(), noise - actions)

    def sample(self, cond: Conditioning, noise: torch.Tensor) -> tuple[torch.Tensor, None]:
        steps = self.cfg.expert.flow_steps
        t = 1.0 - torch.arange(steps, device=noise.device) / steps
        times = time_embedding(t, self.cfg.expert.d_model).to(self.dtype)
        x = noise  # integrated in float32; only the network runs in the head's precision
        for k in range(steps):
            velocity = self(cond, x.to(self.dtype), times[k].expand(x.shape[0], -1))
            x = x - velocity.float() / steps
        return x, None
