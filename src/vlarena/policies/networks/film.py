"""The FiLM backbone: a small CNN per camera, every convolution modulated by the instruction.

Language enters vision early (as in RT-1): a GRU over hashed word tokens gives a scale and a
shift for each convolution's channels, so "red" changes what the first layers respond to and the
colour binding need not be discovered late. Spatial-softmax keypoints (Levine et al.) and an
average pool of the last feature map become a few feature tokens per camera; the instruction
adds one more token. The action heads cross-attend to these tokens as to any backbone's.
"""

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from vlarena.policies.config import BackboneConfig
from vlarena.policies.networks.tokenizer import VOCAB_WORDS

WORD_DIM = 64  # word embedding width


class InstructionEncoder(nn.Module):
    """Word ids (B, L) and padding → one vector per instruction (B, text_width): the GRU state
    after the last word (word order matters: "the red cube on the blue cube")."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB_WORDS, WORD_DIM, padding_idx=0)
        self.gru = nn.GRU(WORD_DIM, width, batch_first=True)

    def forward(self, ids: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        out, _ = self.gru(self.embed(ids))
        last = (~pad).sum(1).clamp(min=1) - 1  # BOS is always there: at least one token
        return out[torch.arange(len(ids), device=ids.device), last]


class FilmCNN(nn.Module):
    """One camera: conv → GroupNorm → FiLM → ReLU per layer, then spatial softmax + pool."""

    def __init__(self, channels: tuple[int, ...], text_width: int) -> None:
        super().__init__()
        ins = (3, *channels[:-1])
        self.convs = nn.ModuleList(
            nn.Conv2d(i, o, 3, stride=2 if k < 3 else 1, padding=1)
            for k, (i, o) in enumerate(zip(ins, channels, strict=True))
        )
        self.norms = nn.ModuleList(nn.GroupNorm(8, c) for c in channels)
        self.film = nn.Linear(text_width, 2 * sum(channels))
        nn.init.zeros_(self.film.weight)  # starts as the identity modulation
        nn.init.zeros_(self.film.bias)
        self.channels = channels

    def forward(self, pixels: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """Pixels (B, 3, H, W) in [-1, 1] and text (B, text_width) → (B, 3·C_last)."""
        gammas_betas = self.film(text).split([2 * c for c in self.channels], dim=1)
        x = pixels
        for conv, norm, gb in zip(self.convs, self.norms, gammas_betas, strict=True):
            gamma, beta = gb[:, :, None, None].chunk(2, dim=1)
            x = F.relu(norm(conv(x)) * (1 + gamma) + beta)
        return torch.cat([spatial_softmax(x), x.mean((2, 3))], dim=1)


def spatial_softmax(x: torch.Tensor) -> torch.Tensor:
    """Feature maps (B, C, h, w) → the expected image coordinates of each channel (B, 2C)."""
    batch, channels, h, w = x.shape
    attention = x.flatten(2).softmax(-1).view(batch, channels, h, w)
    ys = torch.linspace(-1, 1, h, device=x.device, dtype=x.dtype)
    xs = torch.linspace(-1, 1, w, device=x.device, dtype=x.dtype)
    return torch.cat([(attention.sum(3) * ys).sum(2), (attention.sum(2) * xs).sum(2)], dim=1)


class FilmBackbone(nn.Module):
    """Images (B, C, 3, H, W) in [-1, 1] and word ids (B, L) → features (B, N, d) and padding."""

    def __init__(self, cfg: BackboneConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d, n_tokens, last = cfg.d_model, cfg.camera_tokens, cfg.conv_channels[-1]
        self.text = InstructionEncoder(cfg.text_width)
        self.cameras = nn.ModuleList(
            FilmCNN(cfg.conv_channels, cfg.text_width) for _ in cfg.camera_names
        )
        self.camera_out = nn.ModuleList(
            nn.Sequential(nn.Linear(3 * last, 2 * d), nn.GELU(), nn.Linear(2 * d, n_tokens * d))
            for _ in cfg.camera_names
        )
        self.text_out = nn.Linear(cfg.text_width, d)
        self.norm = nn.LayerNorm(d)

    def forward(
        self, images: torch.Tensor, text_ids: torch.Tensor, text_pad: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        text = self.text(text_ids, text_pad)
        tokens = [
            out(cnn(images[:, i], text)).unflatten(1, (self.cfg.camera_tokens, -1))
            for i, (cnn, out) in enumerate(zip(self.cameras, self.camera_out, strict=True))
        ]
        tokens.append(self.text_out(text)[:, None])
        features = self.norm(torch.cat(tokens, dim=1))
        return features, torch.zeros(features.shape[:2], dtype=torch.bool, device=images.device)
