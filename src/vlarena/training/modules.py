"""What training wraps around a NativeVLA: the grounding head, LoRA adapters, one loss module."""

import copy

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from vlarena.data.dataset import GROUNDING_DIM, PLACE_DIM
from vlarena.errors import ConfigError
from vlarena.policies.native import NativeVLA
from vlarena.policies.networks import VLBackbone
from vlarena.training.batches import Batch
from vlarena.training.config import TrainConfig


def grounding_dims(cfg: TrainConfig) -> int:
    """How many of a dataset's grounding targets the run learns (the leading ones)."""
    return GROUNDING_DIM + (PLACE_DIM if cfg.grounding_place else 0)


class GroundingHead(nn.Module):
    """Attention-pools the feature tokens and regresses the grounding targets."""

    def __init__(self, d_model: int, n_heads: int, dims: int) -> None:
        super().__init__()
        self.query = nn.Parameter(torch.randn(1, 1, d_model) * 0.02)
        self.pool = nn.MultiheadAttention(d_model, n_heads, batch_first=True)
        self.out = nn.Sequential(nn.Linear(d_model, d_model), nn.GELU(), nn.Linear(d_model, dims))

    def forward(self, tokens: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
        query = self.query.expand(len(tokens), -1, -1)
        pooled, _ = self.pool(query, tokens, tokens, key_padding_mask=padding, need_weights=False)
        return self.out(pooled[:, 0])


def add_lora(model: NativeVLA, rank: int, alpha: int) -> None:
    """Freeze the backbone and put LoRA adapters on its attention and MLP layers (peft)."""
    from peft import LoraConfig  # imported here: peft pulls in transformers (seconds)
    from peft.tuners.lora import LoraModel

    backbone = model.backbone
    if not isinstance(backbone, VLBackbone):
        raise ConfigError(f"LoRA adapts transformer backbones; this one is {backbone.cfg.arch!r}")
    backbone.requires_grad_(False)
    config = LoraConfig(
        r=rank,
        lora_alpha=alpha,
        lora_dropout=0.0,
        target_modules=["self_attn", "linear1", "linear2"],
    )
    backbone.encoder = LoraModel(backbone.encoder, config, "default")  # type: ignore[assignment]


def plain_state_dict(model: NativeVLA) -> dict[str, torch.Tensor]:
    """The model's weights with any LoRA adapters merged in: the plain checkpoint layout."""
    backbone = model.backbone
    if isinstance(backbone, VLBackbone) and not isinstance(backbone.encoder, nn.TransformerEncoder):
        model = copy.deepcopy(model)
        merged = model.backbone
        assert isinstance(merged, VLBackbone)
        merged.encoder = merged.encoder.merge_and_unload()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


class TrainModule(nn.Module):
    """One forward = one step's loss; what DDP wraps (it needs a forward to hook)."""

    def __init__(self, model: NativeVLA, cfg: TrainConfig) -> None:
        super().__init__()
        self.model = model
        self.stage = cfg.stage
        backbone = model.cfg.backbone
        # Pretraining learns only the grounding targets; stages that train the backbone with the
        # actions may keep them as an auxiliary loss (grounding_weight).
        self.grounding_weight = 1.0 if cfg.stage == "pretrain" else cfg.grounding_weight
        self.grounding = (
            GroundingHead(backbone.d_model, backbone.n_heads, grounding_dims(cfg))
            if self.grounding_weight
            else None
        )

    def forward(
        self, batch: Batch, cached: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> torch.Tensor:
        """The loss of a batch; `cached` holds the anchors' precomputed features (expert stage)."""
        if cached is None:
            tokens, padding = self.model.features(batch.images, batch.text_ids, batch.text_pad)
        else:
            tokens, padding = cached
        grounding = (
            F.mse_loss(self.grounding(tokens, padding), batch.targets)
            if self.grounding is not None
            else None
        )
        if self.stage == "pretrain":
            assert grounding is not None
            return grounding
        tokens = tokens.repeat_interleave(batch.reuse, dim=0)
        padding = padding.repeat_interleave(batch.reuse, dim=0)
        cond = self.model.condition(tokens, padding, batch.states, None)
        loss = self.model.loss(cond, batch.actions, batch.states)
        return loss if grounding is None else loss + self.grounding_weight * grounding
