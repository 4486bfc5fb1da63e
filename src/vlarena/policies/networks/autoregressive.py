"""Token decoder (the RT-1 / OpenVLA family): binned actions, chosen per dimension.

Each normalized action value in [-1, 1] is discretized into `n_bins` bins. The H steps of a
chunk are decoded one at a time, causally, cross-attending to the vision-language features; the
D bins of one step are chosen together from that step's output (as RT-1 does within a step), so
a chunk is H decoder steps rather than H·D. With `parallel_decoding` no step sees the bins
chosen before it: every step's input is the same learned token plus its position, the steps
attend to one another both ways (as OpenVLA-OFT's parallel decoding does), and one decoder pass
yields the whole chunk, so an early error cannot compound along it
(docs/design/shipped-models.md measures both).
"""

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from vlarena.policies.config import VLAConfig
from vlarena.policies.networks.heads import ActionHead, Conditioning


class TokenDecoder(ActionHead):
    """Decodes an HxD action chunk of bins; confidence = mean chosen-bin probability."""

    unit_actions = True

    def __init__(self, cfg: VLAConfig) -> None:
        super().__init__(cfg)
        e, n_bins, dims = cfg.expert.d_model, cfg.expert.n_bins, cfg.action_dim
        self.bos = nn.Parameter(torch.randn(1, 1, e) * 0.02)  # stands before the first step
        if not cfg.expert.parallel_decoding:
            self.bin_emb = nn.Embedding(dims * n_bins, e)  # row j·n_bins + b: bin b of dim j
        self.step_pos = nn.Parameter(torch.randn(1, cfg.chunk_size, e) * 0.02)
        self.logits_out = nn.Linear(e, dims * n_bins)

    def forward(self, cond: Conditioning, steps_in: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits (B, m + 1, D, n_bins) for steps 0..m, given the bins of steps
        0..m-1 (B, m, D); decoding in parallel, the bins are not read and all H steps come."""
        if self.cfg.expert.parallel_decoding:
            return self._decode(cond, self._queries(steps_in.shape[0]))
        bos = self.bos.expand(steps_in.shape[0], -1, -1)
        embedded = torch.cat([bos, self._embed(steps_in)], dim=1)
        return self._decode(cond, embedded + self.step_pos[:, : embedded.shape[1]])

    def _decode(self, cond: Conditioning, inputs: torch.Tensor) -> torch.Tensor:
        """Logits (B, L, D, n_bins) for the step inputs (B, L, e), in one decoder pass: causal
        step by step, bidirectional among the steps decoded in parallel."""
        out, _ = self.decoder(
            torch.cat([cond.prefix, inputs], dim=1),
            cond.memory,
            cond.memory_mask,
            causal=not self.cfg.expert.parallel_decoding,
        )
        return self._logits(out[:, cond.prefix.shape[1] :])

    def _queries(self, batch: int) -> torch.Tensor:
        """Parallel decoding's inputs (B, H, e): the start token at every step's position."""
        return self.bos.expand(batch, self.cfg.chunk_size, -1) + self.step_pos

    def _embed(self, bins: torch.Tensor) -> torch.Tensor:
        """Each step's D bins (..., D) → the sum of their embeddings (..., e)."""
        offset = torch.arange(self.cfg.action_dim, device=bins.device) * self.cfg.expert.n_bins
        return self.bin_emb(bins + offset).sum(-2)

    def _logits(self, out: torch.Tensor) -> torch.Tensor:
        return self.logits_out(out).unflatten(-1, (self.cfg.action_dim, self.cfg.expert.n_bins))

    def to_bins(self, actions: torch.Tensor) -> torch.Tensor:
        """(B, H, D) float32 values in [-1, 1] (clipped) → (B, H, D) bin indices."""
        top = self.cfg.expert.n_bins - 1
        return ((actions.clamp(-1, 1) + 1) / 2 * top).round().long()

    def from_bins(self, bins: torch.Tensor) -> torch.Tensor:
        """(B, H, D) bin indices → (B, H, D) float32 values in [-1, 1] (bin centres)."""
        return bins.float() / (self.cfg.expert.n_bins - 1) * 2 - 1

    def draw_noise(self, generator: torch.Generator) -> torch.Tensor:
        return torch.rand(self.cfg.chunk_size, self.cfg.action_dim, generator=generator)

    def loss(self, cond: Conditioning, actions: torch.Tensor) -> torch.Tensor:
        targets = self.to_bins(actions)
        logits = self(cond, targets[:, :-1])
        return F.cross_entropy(logits.flatten(0, 2).float(), targets.flatten())

    def sample(self, cond: Conditioning, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """At temperature 0 each dimension's median bin (the mode would pick a sharp "hold" over
        a spread "move" that has more mass), else inverse-CDF sampling driven by `noise` (B, H, D).

        Decoding step by step uses a KV cache: each step feeds one token through the decoder.
        """
        if self.cfg.expert.parallel_decoding:
            bins, probs = self._choose(self._decode(cond, self._queries(noise.shape[0])), noise)
            return self.from_bins(bins), probs.flatten(1).mean(1)
        start = self.bos.expand(noise.shape[0], -1, -1) + self.step_pos[:, :1]
        out, cache = self.decoder(
            torch.cat([cond.prefix, start], dim=1), cond.memory, cond.memory_mask, causal=True
        )
        steps, chosen_probs = [], []
        for k in range(self.cfg.chunk_size):
            nxt, chosen = self._choose(self._logits(out[:, -1]), noise[:, k])
            steps.append(nxt)
            chosen_probs.append(chosen)
            if k + 1 < self.cfg.chunk_size:
                step_in = self._embed(nxt[:, None])
                out, cache = self.decoder(
                    step_in + self.step_pos[:, k + 1 : k + 2],
                    cond.memory,
                    cond.memory_mask,
                    past=cache,
                )
        confidence = torch.stack(chosen_probs, dim=1).flatten(1).mean(1)
        return self.from_bins(torch.stack(steps, dim=1)), confidence

    def _choose(
        self, logits: torch.Tensor, noise: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (..., D, n_bins) and noise (..., D) → the chosen bins (..., D), their
        probabilities (..., D)."""
        temperature = self.cfg.expert.temperature
        probs = (logits.float() / (temperature or 1.0)).softmax(-1)
        cdf = probs.cumsum(-1)
        u = (noise[..., None] if temperature else 0.5) * cdf[..., -1:]
        chosen = torch.searchsorted(cdf, u, right=True)[..., 0].clamp(max=probs.shape[-1] - 1)
        return chosen, probs.gather(-1, chosen[..., None])[..., 0]
