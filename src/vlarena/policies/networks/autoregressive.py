"""Autoregressive token decoder (the OpenVLA / RT-2 family).

Each normalized action value in [-1, 1] is discretized into `n_bins` bins; the H·D tokens of a
chunk are decoded one at a time, causally, cross-attending to the vision-language features.
"""

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from vlarena.policies.config import VLAConfig
from vlarena.policies.networks.heads import ActionHead, Conditioning


class TokenDecoder(ActionHead):
    """Decodes an HxD action chunk token by token; confidence = mean chosen-token probability."""

    unit_actions = True

    def __init__(self, cfg: VLAConfig) -> None:
        super().__init__(cfg)
        e, n_bins = cfg.expert.d_model, cfg.expert.n_bins
        self.num_tokens = cfg.chunk_size * cfg.action_dim
        self.bos = n_bins  # the start token follows the bin tokens
        self.token_emb = nn.Embedding(n_bins + 1, e)
        self.token_pos = nn.Parameter(torch.randn(1, self.num_tokens, e) * 0.02)
        self.logits_out = nn.Linear(e, n_bins)

    def forward(self, cond: Conditioning, tokens_in: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits (B, m, n_bins) for the token after each of `tokens_in` (B, m)."""
        out, _ = self.decoder(
            self._prefixed(cond, tokens_in), cond.memory, cond.memory_mask, causal=True
        )
        return self.logits_out(out[:, cond.prefix.shape[1] :])

    def _prefixed(self, cond: Conditioning, tokens_in: torch.Tensor) -> torch.Tensor:
        embedded = self.token_emb(tokens_in) + self.token_pos[:, : tokens_in.shape[1]]
        return torch.cat([cond.prefix, embedded], dim=1)

    def to_bins(self, actions: torch.Tensor) -> torch.Tensor:
        """(B, H, D) float32 values in [-1, 1] (clipped) → (B, H·D) bin indices."""
        top = self.cfg.expert.n_bins - 1
        return ((actions.flatten(1).clamp(-1, 1) + 1) / 2 * top).round().long()

    def from_bins(self, bins: torch.Tensor) -> torch.Tensor:
        """(B, H·D) bin indices → (B, H, D) float32 values in [-1, 1] (bin centres)."""
        values = bins.float() / (self.cfg.expert.n_bins - 1) * 2 - 1
        return values.view(-1, self.cfg.chunk_size, self.cfg.action_dim)

    def draw_noise(self, generator: torch.Generator) -> torch.Tensor:
        return torch.rand(self.num_tokens, generator=generator)

    def loss(self, cond: Conditioning, actions: torch.Tensor) -> torch.Tensor:
        targets = self.to_bins(actions)
        bos = torch.full_like(targets[:, :1], self.bos)
        logits = self(cond, torch.cat([bos, targets[:, :-1]], dim=1))
        return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())

    def sample(self, cond: Conditioning, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Greedy at temperature 0, else inverse-CDF sampling driven by `noise` (B, H·D).

        Decodes with a KV cache: each step feeds one token through the decoder.
        """
        temperature = self.cfg.expert.temperature
        bos = torch.full((noise.shape[0], 1), self.bos, device=noise.device, dtype=torch.long)
        out, cache = self.decoder(
            self._prefixed(cond, bos), cond.memory, cond.memory_mask, causal=True
        )
        tokens, chosen_probs = [], []
        for k in range(self.num_tokens):
            logits = self.logits_out(out[:, -1]).float()
            if temperature == 0:
                probs = logits.softmax(-1)
                nxt = probs.argmax(-1)
            else:
                probs = (logits / temperature).softmax(-1)
                cdf = probs.cumsum(-1)
                u = noise[:, k : k + 1] * cdf[:, -1:]
                nxt = torch.searchsorted(cdf, u, right=True)[:, 0]
                nxt = nxt.clamp(max=probs.shape[-1] - 1)
            tokens.append(nxt)
            chosen_probs.append(probs.gather(1, nxt[:, None])[:, 0])
            if k + 1 < self.num_tokens:
                step_in = self.token_emb(nxt)[:, None] + self.token_pos[:, k + 1 : k + 2]
                out, cache = self.decoder(step_in, cond.memory, cond.memory_mask, past=cache)
        confidence = torch.stack(chosen_probs, dim=1).mean(1)
        return self.from_bins(torch.stack(tokens, dim=1)), confidence
