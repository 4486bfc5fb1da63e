"""How well a trunk's frozen vision-language features locate the named cube and the place the
task puts it (the other cube, for stacking).

A fresh attention-pooling head (the grounding head's shape) learns the xy of both from the
features of the first episodes of a dataset and is scored on the last ones: median xy error in
cm (docs/design/shipped-models.md, "Stacking, measured closer"). The dataset must record the
place targets (this version's `vlarena datagen`); a DAgger dataset would score on its recovery
episodes, which come last.

    python -m vlarena.evaluation.probe DATASET CHECKPOINT...
"""

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from vlarena.data.dataset import GROUNDING_DIM, PLACE_DIM, DemoDataset
from vlarena.errors import ConfigError, VLArenaError
from vlarena.policies import load_policy
from vlarena.policies.native import NativeVLAPolicy
from vlarena.training.batches import BatchSampler
from vlarena.training.modules import GroundingHead
from vlarena.training.trainer import frame_features

# The probed columns of the grounding targets: the named cube's x, y, then the place's x, y.
COLUMNS = (0, 1, GROUNDING_DIM, GROUNDING_DIM + 1)


@dataclass(frozen=True)
class ProbeConfig:
    """How the probe heads are fitted and scored."""

    steps: int = 2000  # optimizer steps of each probe head
    starts: int = 2  # heads from different random weights; each is scored
    frame_stride: int = 2  # every n-th frame of the dataset
    test_share: float = 0.25  # the share of episodes, the last ones, held out for scoring
    batch_size: int = 128  # frames per step
    lr: float = 1e-3  # AdamW learning rate

    def __post_init__(self) -> None:
        counts = (self.steps, self.starts, self.frame_stride, self.batch_size)
        if min(counts) < 1:
            raise ConfigError("steps, starts, frame_stride and batch_size must be ≥ 1")
        if not 0 < self.test_share < 1 or not 0 < self.lr < 1:
            raise ConfigError("test_share and lr must be in (0, 1)")


@dataclass(frozen=True)
class ProbeResult:
    """Median xy error in cm on the held-out frames, one value per probe head."""

    named_cm: tuple[float, ...]  # the named cube
    place_cm: tuple[float, ...]  # where the task places it


def _features(
    policy: NativeVLAPolicy, data: DemoDataset, frames: np.ndarray
) -> tuple[torch.Tensor, torch.Tensor]:
    model = policy.model
    sampler = BatchSampler(
        data, model.cfg.backbone, model.cfg.chunk_size, 1, 0, GROUNDING_DIM + PLACE_DIM
    )
    computed = list(frame_features(model, sampler, frames))
    return torch.cat([f.float() for _, f, _ in computed]), torch.cat([p for _, _, p in computed])


def fit_mask(data: DemoDataset, frames: np.ndarray, test_share: float) -> np.ndarray:
    """True for the frames the probe fits on: those of all but the last episodes."""
    n_episodes = len(data.meta.episodes)
    n_test = round(n_episodes * test_share)
    fit = np.asarray(data.episode)[frames] < n_episodes - n_test
    if not 0 < n_test < n_episodes or fit.sum() < 2 or fit.all():
        raise ConfigError(
            f"{len(frames)} frames of {n_episodes} episodes cannot be split for a probe "
            f"(test_share {test_share})"
        )
    return fit


def probe(dataset: Path, checkpoint: Path, cfg: ProbeConfig | None = None) -> ProbeResult:
    """Fit `cfg.starts` probe heads on the checkpoint's frozen features and score them."""
    cfg = cfg or ProbeConfig()
    data = DemoDataset(dataset)
    if data.target.shape[1] < GROUNDING_DIM + PLACE_DIM:
        raise ConfigError(
            f"{dataset} records only {data.target.shape[1]} grounding targets, not the place "
            "targets the probe scores (regenerate it with this version's vlarena datagen)"
        )
    frames = np.arange(0, len(data), cfg.frame_stride)
    fit = torch.as_tensor(fit_mask(data, frames, cfg.test_share))
    policy = load_policy(checkpoint)
    if not isinstance(policy, NativeVLAPolicy):
        raise ConfigError(f"{checkpoint}: the probe reads a native VLA's features")
    tokens, pads = _features(policy, data, frames)
    xy = torch.as_tensor(np.asarray(data.target)[frames][:, COLUMNS], dtype=torch.float32)
    mean, std = xy[fit].mean(0), xy[fit].std(0).clamp_min(1e-6)
    fit_rows, test_rows = torch.nonzero(fit)[:, 0], torch.nonzero(~fit)[:, 0]
    named, place = [], []
    for start in range(cfg.starts):
        generator = torch.Generator().manual_seed(start)
        with torch.random.fork_rng(devices=[]):  # the caller's global RNG is left as it was
            torch.manual_seed(start)
            head = GroundingHead(tokens.shape[-1], policy.model.cfg.backbone.n_heads, len(COLUMNS))
        optimizer = torch.optim.AdamW(head.parameters(), lr=cfg.lr)
        for _ in range(cfg.steps):
            rows = fit_rows[torch.randint(len(fit_rows), (cfg.batch_size,), generator=generator)]
            loss = F.mse_loss(head(tokens[rows], pads[rows]), (xy[rows] - mean) / std)
            optimizer.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
        with torch.no_grad():
            error = head(tokens[test_rows], pads[test_rows]) * std + mean - xy[test_rows]
        named.append(100 * error[:, :2].norm(dim=1).median().item())
        place.append(100 * error[:, 2:].norm(dim=1).median().item())
    return ProbeResult(tuple(named), tuple(place))


def main(argv: list[str]) -> None:
    if len(argv) < 2:
        raise SystemExit("usage: python -m vlarena.evaluation.probe DATASET CHECKPOINT...")
    dataset = Path(argv[0])
    for checkpoint in argv[1:]:
        try:
            result = probe(dataset, Path(checkpoint))
        except VLArenaError as exc:
            raise SystemExit(f"error: {exc}") from None
        named, place = (
            f"{np.mean(e):.2f} cm ({min(e):.2f}-{max(e):.2f})"
            for e in (result.named_cm, result.place_cm)
        )
        print(
            f"{checkpoint}: median xy error, mean (range) of {len(result.named_cm)} heads: "
            f"named cube {named}, place {place}"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
