"""A pre-norm transformer decoder whose cross-attention keys/values are computed once per call
(reused across Euler steps or decoded tokens) and whose self-attention supports a KV cache."""

from typing import cast

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

KV = tuple[torch.Tensor, torch.Tensor]  # keys and values, each (B, heads, L, head_dim)


class Attention(nn.Module):
    """Multi-head attention on scaled_dot_product_attention, with keys/values passed in."""

    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.q_proj = nn.Linear(d_model, d_model)
        self.kv_proj = nn.Linear(d_model, 2 * d_model)
        self.out_proj = nn.Linear(d_model, d_model)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(*x.shape[:-1], self.n_heads, -1).transpose(1, 2)

    def keys_values(self, x: torch.Tensor) -> KV:
        k, v = self.kv_proj(x).chunk(2, dim=-1)
        return self._heads(k), self._heads(v)

    def forward(
        self, x: torch.Tensor, kv: KV, mask: torch.Tensor | None = None, causal: bool = False
    ) -> torch.Tensor:
        out = F.scaled_dot_product_attention(
            self._heads(self.q_proj(x)), kv[0], kv[1], attn_mask=mask, is_causal=causal
        )
        return self.out_proj(out.transpose(1, 2).flatten(2))


class DecoderLayer(nn.Module):
    """Self-attention, cross-attention to the features, GELU MLP; all pre-norm residual."""

    def __init__(self, d_model: int, n_heads: int, mlp_ratio: int) -> None:
        super().__init__()
        self.norm_self, self.norm_cross, self.norm_mlp = (nn.LayerNorm(d_model) for _ in range(3))
        self.self_attn = Attention(d_model, n_heads)
        self.cross_attn = Attention(d_model, n_heads)
        self.mlp = nn.Sequential(
            nn.Linear(d_model, mlp_ratio * d_model),
            nn.GELU(),
            nn.Linear(mlp_ratio * d_model, d_model),
        )

    def forward(
        self, x: torch.Tensor, memory: KV, memory_mask: torch.Tensor, past: KV | None, causal: bool
    ) -> tuple[torch.Tensor, KV]:
        h = self.norm_self(x)
        k, v = self.self_attn.keys_values(h)
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        x = x + self.self_attn(h, (k, v), causal=causal)
        x = x + self.cross_attn(self.norm_cross(x), memory, mask=memory_mask)
        return x + self.mlp(self.norm_mlp(x)), (k, v)


class ExpertDecoder(nn.Module):
    """A stack of DecoderLayers; `memory_kv` precomputes every layer's cross-attention input."""

    def __init__(self, d_model: int, n_layers: int, n_heads: int, mlp_ratio: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            DecoderLayer(d_model, n_heads, mlp_ratio) for _ in range(n_layers)
        )
        self.norm = nn.LayerNorm(d_model)

    def memory_kv(self, memory: torch.Tensor) -> list[KV]:
        layers = cast("list[DecoderLayer]", list(self.layers))
        return [layer.cross_attn.keys_values(memory) for layer in layers]

    def forward(
        self,
        x: torch.Tensor,
        memory: list[KV],
        memory_mask: torch.Tensor,
        past: list[KV] | None = None,
        causal: bool = False,
    ) -> tuple[torch.Tensor, list[KV]]:
        """Decode `x` (B, L, d); with `past`, x continues the cached sequence (no causal mask)."""
        cache = []
        for i, layer in enumerate(self.layers):
            x, kv = layer(x, memory[i], memory_mask, None if past is None else past[i], causal)
            cache.append(kv)
        return self.norm(x), cache
