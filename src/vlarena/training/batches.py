"""Training batches from a demonstration dataset, drawn the async-aware way.

A batch holds `batch_size` anchor frames; the features of each anchor are reused for
`vlm_reuse_count` samples whose proprioception and action targets come from the same frame or
from later ones, as a deployed model sees features that are a few control steps stale.
"""

from dataclasses import dataclass

import numpy as np
import torch

from vlarena.data.dataset import DemoDataset
from vlarena.errors import ConfigError
from vlarena.policies.config import BackboneConfig
from vlarena.policies.networks.tokenizer import encode_instructions


@dataclass(frozen=True)
class Batch:
    """Tensors for one step; the k-th group of `reuse` samples shares anchor k's features."""

    anchors: torch.Tensor  # (B,) anchor frame indices
    images: torch.Tensor  # (B, C, H, W, 3) uint8
    text_ids: torch.Tensor  # (B, L)
    text_pad: torch.Tensor  # (B, L) True where padded
    targets: torch.Tensor  # (B, G) grounding targets of the anchors, standardized
    states: torch.Tensor  # (B·reuse, 2J) raw proprioception of the acting frames
    actions: torch.Tensor  # (B·reuse, H, D) raw action chunks from the acting frames
    reuse: int  # samples per anchor


class BatchSampler:
    """Draws batches reproducibly: batch `step` of a rank depends only on (seed, rank, step)."""

    def __init__(
        self,
        data: DemoDataset,
        backbone: BackboneConfig,
        chunk_size: int,
        reuse: int,
        seed: int,
        target_dims: int,
        rank: int = 0,
    ) -> None:
        """`target_dims`: the leading grounding targets used (the dataset may record more)."""
        cameras, size = backbone.camera_names, data.meta.image_size
        missing = sorted(set(cameras) - set(data.images))
        if missing:
            raise ConfigError(
                f"the model needs cameras {missing}; the dataset has {sorted(data.images)}"
            )
        if (backbone.image_height, backbone.image_width) != (size, size):
            raise ConfigError(
                f"the model takes {backbone.image_height}x{backbone.image_width} "
                f"images; the dataset has {size}x{size}"
            )
        self.data, self.cameras = data, cameras
        self.chunk_size, self.reuse, self.seed, self.rank = chunk_size, reuse, seed, rank
        self.text_ids, self.text_pad = encode_instructions(
            backbone.arch, [e.instruction for e in data.meta.episodes], backbone.max_text_len
        )
        if data.target.shape[1] < target_dims:
            raise ConfigError(
                f"grounding_place needs the place targets; the dataset records only "
                f"{data.target.shape[1]} grounding targets (regenerate it with this version's "
                "vlarena datagen, and any DAgger rounds on it)"
            )
        self.target_dims = target_dims
        target = np.asarray(data.target[:, :target_dims], dtype=np.float64)
        self.target_mean = target.mean(0)
        self.target_std = np.maximum(target.std(0), 1e-6)

    def rng(self, step: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.rank, step])

    def draw(self, step: int, batch_size: int) -> Batch:
        rng = self.rng(step)
        anchors = np.sort(rng.integers(0, len(self.data), batch_size))  # sorted: faster mmap reads
        # As deployed: one feature computation serves the next `reuse` control steps.
        return self.make(anchors, np.tile(np.arange(self.reuse), (batch_size, 1)))

    def make(self, anchors: np.ndarray, offsets: np.ndarray) -> Batch:
        """The batch for given anchors and (B, reuse) frame offsets after them."""
        data = self.data
        acting = data.later_frames(np.repeat(anchors, self.reuse), offsets.ravel())
        episodes = np.asarray(data.episode[anchors], dtype=np.int64)
        images = np.stack([np.asarray(data.images[c][anchors]) for c in self.cameras], axis=1)
        rows = np.asarray(data.target[anchors, : self.target_dims])
        targets = (rows - self.target_mean) / self.target_std
        return Batch(
            anchors=torch.from_numpy(anchors),
            images=torch.from_numpy(images),
            text_ids=self.text_ids[episodes],
            text_pad=self.text_pad[episodes],
            targets=torch.from_numpy(targets.astype(np.float32)),
            states=torch.from_numpy(np.asarray(data.state[acting])),
            actions=torch.from_numpy(data.action_chunks(acting, self.chunk_size)),
            reuse=self.reuse,
        )


def augment(
    images: torch.Tensor, generator: torch.Generator, max_shift_px: int = 4
) -> torch.Tensor:
    """Random shift (replicate-padded crop) and gain/offset jitter of uint8 images."""
    batch, cams, height, width, _ = images.shape
    flat = images.flatten(0, 1).permute(0, 3, 1, 2).float()  # (B·C, 3, H, W)
    padded = torch.nn.functional.pad(flat, [max_shift_px] * 4, mode="replicate")
    dx, dy = torch.randint(0, 2 * max_shift_px + 1, (2, len(flat)), generator=generator)
    crops = zip(dx.tolist(), dy.tolist(), strict=True)
    shifted = torch.stack(
        [padded[i, :, y : y + height, x : x + width] for i, (x, y) in enumerate(crops)]
    )
    gain = 1.0 + 0.2 * (torch.rand(len(flat), 1, 1, 1, generator=generator) - 0.5)
    bias = 20.0 * (torch.rand(len(flat), 1, 1, 1, generator=generator) - 0.5)
    out = (shifted * gain + bias).clamp(0, 255).round().to(torch.uint8)
    return out.permute(0, 2, 3, 1).reshape(batch, cams, height, width, 3)
