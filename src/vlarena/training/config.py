"""Training configs: one frozen dataclass per stage run, and the named recipes built from them."""

from dataclasses import dataclass, replace
from functools import partial
from typing import Literal

from vlarena.errors import ConfigError, UnknownNameError
from vlarena.policies.config import PRESETS

Stage = Literal["pretrain", "expert", "lora", "full"]
STAGES: dict[str, str] = {
    "pretrain": "backbone only, on grounding targets (stands in for a pretrained VLM)",
    "expert": "stage 1: backbone frozen, features cached once and reused",
    "lora": "stage 2: LoRA adapters on the backbone, the action expert trained in full",
    "full": "every weight trained end to end",
}


@dataclass(frozen=True)
class TrainConfig:
    """One training run of one stage."""

    family: str = "vla-flow"  # native policy type: vla-flow or vla-ar
    preset: str = "small"  # model size preset (policies.config.PRESETS)
    stage: Stage = "full"  # what is trained (STAGES)
    steps: int = 2000  # optimizer steps
    batch_size: int = 32  # anchor frames per step (each one yields vlm_reuse_count samples)
    lr: float = 3e-4  # peak learning rate of the trained head / backbone
    backbone_lr: float = 1e-4  # lora stage: learning rate of the adapters
    weight_decay: float = 1e-4  # AdamW weight decay
    warmup_steps: int = 100  # linear warm-up, then cosine decay to 10% of the peak
    vlm_reuse_count: int = 3  # features of one frame reused for this many steps (dual-rate)
    augment: bool = True  # random image shifts and brightness jitter (stages that see pixels)
    lora_rank: int = 8  # lora stage: adapter rank
    lora_alpha: int = 16  # lora stage: adapter scale numerator (scale = alpha / rank)
    grad_clip: float = 1.0  # global gradient-norm clip
    grounding_weight: float = 0.0  # full / lora stages: weight of the auxiliary grounding loss
    grounding_place: bool = False  # grounding also learns where the task places the cube
    word_noise: float = 0.0  # film, not expert: chance a word (not colour or side) is replaced
    seed: int = 0  # weights, sampling and augmentation draw from this
    log_every: int = 20  # steps between loss log lines
    checkpoint_every: int = 500  # steps between checkpoints (and at the end)

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise UnknownNameError("stage", self.stage, STAGES)
        if self.preset not in PRESETS:
            raise UnknownNameError("preset", self.preset, PRESETS)
        positive = {
            "steps": self.steps,
            "batch_size": self.batch_size,
            "log_every": self.log_every,
            "checkpoint_every": self.checkpoint_every,
            "lora_rank": self.lora_rank,
            "vlm_reuse_count": self.vlm_reuse_count,
            "lora_alpha": self.lora_alpha,
        }
        for name, value in positive.items():
            if value < 1:
                raise ConfigError(f"{name} must be ≥ 1, got {value}")
        rates = {"lr": self.lr, "backbone_lr": self.backbone_lr, "grad_clip": self.grad_clip}
        for name, rate in rates.items():
            if not 0 < rate < 10:
                raise ConfigError(f"{name} must be in (0, 10), got {rate}")
        if self.warmup_steps < 0 or self.weight_decay < 0 or self.seed < 0:
            raise ConfigError("warmup_steps, weight_decay and seed must be ≥ 0")
        if not 0 <= self.grounding_weight < 100:
            raise ConfigError(f"grounding_weight must be in [0, 100), got {self.grounding_weight}")
        if not 0 <= self.word_noise < 1:
            raise ConfigError(f"word_noise must be in [0, 1), got {self.word_noise}")
        if self.word_noise and self.stage == "expert":
            raise ConfigError("word_noise needs a stage that reads the text (not expert)")
        if self.word_noise and PRESETS[self.preset].backbone.arch != "film":
            raise ConfigError(f"word_noise needs a film backbone; {self.preset!r} reads bytes")
        if self.grounding_place and not (self.grounding_weight or self.stage == "pretrain"):
            raise ConfigError("grounding_place needs grounding (pretrain, or grounding_weight)")
        if self.grounding_weight and self.stage not in ("full", "lora"):
            raise ConfigError(
                "grounding_weight needs a stage that trains the backbone and the "
                "actions (full or lora)"
            )


# A few steps of each stage on the tiny preset: the pipeline end to end, in seconds.
_smoke = partial(
    TrainConfig,
    preset="tiny",
    steps=6,
    batch_size=4,
    warmup_steps=1,
    log_every=2,
    checkpoint_every=3,
)

# What every stage of the shipped recipes shares, and the two stages the last rounds vary.
_ship = partial(TrainConfig, preset="film", batch_size=64, log_every=50, checkpoint_every=1000)
_SHIP_DAGGER = _ship(stage="full", steps=2000, lr=3e-4, warmup_steps=100, grounding_weight=0.5)
_SHIP_HEAD = _ship(stage="expert", steps=16000, lr=1e-3, warmup_steps=200, vlm_reuse_count=2)

# Named recipes: stage configs in order, each stage initialized from the previous one's
# checkpoint.
RECIPES: dict[str, tuple[TrainConfig, ...]] = {
    # The shipped checkpoints (docs/models.md). The FiLM trunk first learns to find the named
    # cube (grounding targets, no actions: fast), then trunk and flow head learn together end
    # to end, keeping the grounding targets as an auxiliary loss...
    "ship": (
        _ship(stage="pretrain", steps=2000, lr=1e-3, warmup_steps=100),
        _ship(stage="full", steps=9000, lr=1e-3, warmup_steps=200, grounding_weight=0.5),
    ),
    # ...then, once per DAgger round, the same end to end on the demonstrations plus the expert's
    # takeovers from the states the model reached (`vlarena dagger`), from its last checkpoint.
    "ship-dagger": (_SHIP_DAGGER,),
    # ...then a second family's head learns on the frozen trunk's cached features (--init).
    "ship-head": (_SHIP_HEAD,),
    # A last round for the flow model, after the AR head has its trunk: its rollouts run as the
    # model is deployed (asked every step, chunks ensembled) and the data is the demonstrations
    # plus these takeovers. No grounding loss: it depends only on the checkpoint, not on the
    # training state beside it, so the shipped checkpoint alone reproduces the round.
    "ship-dagger-ensembled": (replace(_SHIP_DAGGER, grounding_weight=0.0),),
    # ...and one for the AR head, from its own rollouts, run the same way (its trunk stays frozen).
    "ship-head-dagger": (replace(_SHIP_HEAD, steps=4000, lr=3e-4, warmup_steps=100),),
    "smoke": tuple(_smoke(stage=stage) for stage in ("pretrain", "expert", "lora")),
}


def get_recipe(name: str, family: str, from_stage: str | None = None) -> tuple[TrainConfig, ...]:
    """The named recipe's stages for a family, optionally from one stage on (the earlier ones
    done already, e.g. a backbone pretrained once for both families)."""
    if name not in RECIPES:
        raise UnknownNameError("recipe", name, RECIPES)
    stages = [replace(stage, family=family) for stage in RECIPES[name]]
    if from_stage is not None:
        names = [s.stage for s in stages]
        if from_stage not in names:
            raise UnknownNameError(f"stage of recipe {name!r}", from_stage, names)
        stages = stages[names.index(from_stage) :]
    return tuple(stages)
