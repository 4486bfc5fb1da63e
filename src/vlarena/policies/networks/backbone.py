"""The vision-language backbone: patch tokens of every camera and byte tokens, one transformer."""

import torch
from torch import nn

from vlarena.policies.config import BackboneConfig
from vlarena.policies.networks.tokenizer import VOCAB_SIZE


def transformer_encoder(
    d_model: int, n_layers: int, n_heads: int, mlp_ratio: int, dropout: float = 0.0
) -> nn.TransformerEncoder:
    """Pre-norm GELU transformer encoder, batch-first."""
    layer = nn.TransformerEncoderLayer(
        d_model,
        n_heads,
        mlp_ratio * d_model,
        dropout,
        activation="gelu",
        batch_first=True,
        norm_first=True,
    )
    return nn.TransformerEncoder(
        layer, n_layers, norm=nn.LayerNorm(d_model), enable_nested_tensor=False
    )


def patch_stem(kind: str, d_model: int, patch_size: int) -> nn.Module:
    """Pixels → one token per patch: a single strided conv (ViT) or a small conv stack.

    The conv stem (Xiao et al., "Early convolutions help transformers see better") makes a
    from-scratch backbone learn where things are in far fewer steps.
    """
    if kind == "patch":
        return nn.Conv2d(3, d_model, kernel_size=patch_size, stride=patch_size)
    last = patch_size // 4
    return nn.Sequential(
        nn.Conv2d(3, d_model // 4, 3, stride=2, padding=1),
        nn.GELU(),
        nn.Conv2d(d_model // 4, d_model // 2, 3, stride=2, padding=1),
        nn.GELU(),
        nn.Conv2d(d_model // 2, d_model, last, stride=last),
    )


class VLBackbone(nn.Module):
    """Images (B, C, 3, H, W) in [-1, 1] and text ids (B, L) → features (B, N, d) and padding."""

    def __init__(self, cfg: BackboneConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d, n_cams = cfg.d_model, len(cfg.camera_names)
        self.patch = patch_stem(cfg.stem, d, cfg.patch_size)
        self.patch_pos = nn.Parameter(torch.randn(1, cfg.tokens_per_camera, d) * 0.02)
        self.camera_emb = nn.Parameter(torch.randn(n_cams, 1, d) * 0.02)
        self.text_emb = nn.Embedding(VOCAB_SIZE, d)
        self.text_pos = nn.Parameter(torch.randn(1, cfg.max_text_len, d) * 0.02)
        self.encoder = transformer_encoder(d, cfg.n_layers, cfg.n_heads, cfg.mlp_ratio, cfg.dropout)

    def forward(
        self, images: torch.Tensor, text_ids: torch.Tensor, text_pad: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        batch, n_cams = images.shape[:2]
        patches = self.patch(images.flatten(0, 1)).flatten(2).transpose(1, 2) + self.patch_pos
        patches = patches.unflatten(0, (batch, n_cams)) + self.camera_emb
        image_tokens = patches.flatten(1, 2)
        text_tokens = self.text_emb(text_ids) + self.text_pos
        tokens = torch.cat([image_tokens, text_tokens], dim=1)
        image_pad = torch.zeros(image_tokens.shape[:2], dtype=torch.bool, device=tokens.device)
        padding = torch.cat([image_pad, text_pad], dim=1)
        return self.encoder(tokens, src_key_padding_mask=padding), padding
