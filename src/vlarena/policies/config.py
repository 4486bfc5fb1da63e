"""Model configs of the native VLA families: frozen dataclasses, validated on construction."""

import math
from dataclasses import dataclass, field

from vlarena.errors import ConfigError, UnknownNameError
from vlarena.policies.schema import STRICT_JSON, JsonCodec
from vlarena.types import (
    MAX_CAMERAS,
    MAX_IMAGE_SIDE_PX,
    MAX_INSTRUCTION_BYTES,
    MAX_JOINTS,
    MAX_SENSOR_CHANNELS,
    MAX_SENSOR_SAMPLES,
)

MAX_WIDTH = 16384  # token width cap: keeps a hostile config.json from allocating terabytes
MAX_LAYERS = 256
MAX_CHUNK = 1024
STEMS = ("patch", "conv")
# Backbone architectures: "transformer" (patch and byte tokens through self-attention) or "film"
# (a small CNN per camera whose every convolution is modulated by the instruction, RT-1 style).
ARCHS = ("transformer", "film")
ACTION_SPACES = ("absolute", "delta")


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def _in_range(name: str, value: int, low: int, high: int) -> None:
    _require(low <= value <= high, f"{name} must be in {low}..{high}, got {value}")


def _names(name: str, values: tuple[str, ...], most: int) -> None:
    _in_range(f"number of {name}", len(values), 1, most)
    _require(all(values), f"{name} must be non-empty strings")
    _require(len(set(values)) == len(values), f"{name} repeat")


@dataclass(frozen=True)
class BackboneConfig:
    """The slow vision-language stage: images + instruction → feature tokens."""

    __pydantic_config__ = STRICT_JSON

    arch: str = "transformer"  # ARCHS: self-attention over patches and bytes, or a FiLM CNN
    camera_names: tuple[str, ...] = ("front", "wrist")  # cameras, in token order
    image_height: int = 96  # input image height in pixels
    image_width: int = 96  # input image width in pixels
    patch_size: int = 12  # transformer: square patch side; tokens per camera = (H/p)·(W/p)
    stem: str = "patch"  # transformer: "patch" (one strided conv) or "conv" (3-conv stack)
    max_text_len: int = 48  # instruction tokens kept: bytes (transformer) or words (film)
    d_model: int = 128  # feature token width
    n_layers: int = 4  # transformer layers
    n_heads: int = 4  # attention heads (transformer; film: the grounding head's pooling)
    mlp_ratio: int = 4  # feed-forward width = mlp_ratio · d_model
    dropout: float = 0.0  # dropout inside the transformer (training only)
    conv_channels: tuple[int, ...] = (32, 64, 96, 96)  # film: channels per conv (the first
    # three halve the resolution)
    text_width: int = 128  # film: GRU width of the instruction encoder (FiLM's conditioning)
    camera_tokens: int = 4  # film: feature tokens per camera (from its spatial-softmax keypoints)

    def __post_init__(self) -> None:
        _require(self.arch in ARCHS, f"arch must be one of {ARCHS}, got {self.arch!r}")
        _names("camera_names", self.camera_names, MAX_CAMERAS)
        _in_range("image_height", self.image_height, 1, MAX_IMAGE_SIDE_PX)
        _in_range("image_width", self.image_width, 1, MAX_IMAGE_SIDE_PX)
        if self.arch == "transformer":
            self._check_patches()
        _in_range("max_text_len", self.max_text_len, 2, MAX_INSTRUCTION_BYTES + 1)
        _check_transformer("backbone", self.d_model, self.n_layers, self.n_heads, self.mlp_ratio)
        _require(0.0 <= self.dropout < 1.0, "dropout must be in [0, 1)")
        _in_range("number of conv_channels", len(self.conv_channels), 1, 8)
        for channels in self.conv_channels:
            _in_range("conv_channels", channels, 8, 1024)
            _require(channels % 8 == 0, f"conv_channels must be multiples of 8, got {channels}")
        _in_range("text_width", self.text_width, 1, MAX_WIDTH)
        _in_range("camera_tokens", self.camera_tokens, 1, 64)

    def _check_patches(self) -> None:
        _in_range("patch_size", self.patch_size, 1, min(self.image_height, self.image_width))
        _require(
            self.image_height % self.patch_size == 0 and self.image_width % self.patch_size == 0,
            f"image size {self.image_height}x{self.image_width} is not a multiple of "
            f"patch_size {self.patch_size}",
        )
        _require(self.stem in STEMS, f"stem must be one of {STEMS}, got {self.stem!r}")
        _require(
            self.stem == "patch" or self.patch_size % 4 == 0,
            f"the conv stem needs a patch_size divisible by 4, got {self.patch_size}",
        )

    @property
    def tokens_per_camera(self) -> int:
        if self.arch == "film":
            return self.camera_tokens
        return (self.image_height // self.patch_size) * (self.image_width // self.patch_size)


@dataclass(frozen=True)
class ExpertConfig:
    """The fast action stage: a transformer decoder cross-attending to vision-language features."""

    __pydantic_config__ = STRICT_JSON

    d_model: int = 64  # token width
    n_layers: int = 2  # decoder layers
    n_heads: int = 4  # attention heads
    mlp_ratio: int = 4  # feed-forward width = mlp_ratio · d_model
    flow_steps: int = 10  # flow family: Euler steps from noise to actions
    n_bins: int = 256  # autoregressive family: bins per action dimension
    temperature: float = 0.0  # autoregressive family: 0 decodes medians, > 0 samples
    # autoregressive family: decode the chunk's steps in one pass, attending to one another both
    # ways, none seeing the bins chosen for the others
    parallel_decoding: bool = False

    def __post_init__(self) -> None:
        _check_transformer("expert", self.d_model, self.n_layers, self.n_heads, self.mlp_ratio)
        _require(self.d_model % 2 == 0, "expert d_model must be even (sinusoidal time embedding)")
        _in_range("flow_steps", self.flow_steps, 1, 1000)
        _in_range("n_bins", self.n_bins, 2, 4096)
        _require(
            math.isfinite(self.temperature) and self.temperature >= 0.0,
            "temperature must be finite and ≥ 0",
        )


@dataclass(frozen=True)
class VLAConfig:
    """A whole native VLA: backbone, action expert and the robot interface."""

    __pydantic_config__ = STRICT_JSON

    backbone: BackboneConfig = field(default_factory=BackboneConfig)  # vision-language stage
    expert: ExpertConfig = field(default_factory=ExpertConfig)  # action stage
    action_dim: int = 8  # D: 7 joint targets + gripper for the Franka Panda
    chunk_size: int = 8  # H: actions predicted per call
    state_dim: int = 9  # J: joint positions (and as many velocities) per observation
    sensor_window: int = 0  # T: high-rate sensor samples per observation (0: none)
    sensor_dim: int = 0  # sensor channels (0: none)
    embodiments: tuple[str, ...] = ("franka",)  # robot tags the model accepts
    # ACTION_SPACES: "delta" predicts the first D-1 joint targets relative to the current joint
    # positions (the gripper stays absolute); the policy returns absolute targets either way.
    action_space: str = "absolute"

    def __post_init__(self) -> None:
        _in_range("action_dim", self.action_dim, 1, MAX_JOINTS)
        _require(
            self.action_space in ACTION_SPACES,
            f"action_space must be one of {ACTION_SPACES}, got {self.action_space!r}",
        )
        _in_range("chunk_size", self.chunk_size, 1, MAX_CHUNK)
        _in_range("state_dim", self.state_dim, 1, MAX_JOINTS)
        _in_range("sensor_window", self.sensor_window, 0, MAX_SENSOR_SAMPLES)
        _in_range("sensor_dim", self.sensor_dim, 0, MAX_SENSOR_CHANNELS)
        _require(
            (self.sensor_window == 0) == (self.sensor_dim == 0),
            "sensor_window and sensor_dim must both be 0 or both positive",
        )
        _names("embodiments", self.embodiments, 64)
        _require(
            self.action_space == "absolute" or 2 <= self.action_dim <= self.state_dim + 1,
            "delta actions need 2 ≤ action_dim ≤ state_dim + 1 (joint targets + gripper)",
        )

    @property
    def relative_dims(self) -> int:
        """Leading action dimensions predicted relative to the joint positions (0: none)."""
        return self.action_dim - 1 if self.action_space == "delta" else 0


def _check_transformer(where: str, d_model: int, n_layers: int, n_heads: int, mlp: int) -> None:
    _in_range(f"{where} d_model", d_model, 1, MAX_WIDTH)
    _in_range(f"{where} n_layers", n_layers, 1, MAX_LAYERS)
    _in_range(f"{where} n_heads", n_heads, 1, d_model)
    _require(
        d_model % n_heads == 0, f"{where}: d_model {d_model} not divisible by n_heads {n_heads}"
    )
    _in_range(f"{where} mlp_ratio", mlp, 1, 16)


VLA_CONFIG_JSON = JsonCodec(VLAConfig, "VLA config")

PRESETS: dict[str, VLAConfig] = {
    # Unit tests: under a million parameters, milliseconds per call.
    "tiny": VLAConfig(
        backbone=BackboneConfig(
            image_height=32,
            image_width=32,
            patch_size=8,
            max_text_len=32,
            d_model=32,
            n_layers=2,
            n_heads=2,
        ),
        expert=ExpertConfig(d_model=32, n_layers=1, n_heads=2, flow_steps=4, n_bins=32),
        chunk_size=4,
    ),
    # The film architecture at unit-test size (32x32, the tiny dataset's images).
    "film-tiny": VLAConfig(
        backbone=BackboneConfig(
            arch="film",
            image_height=32,
            image_width=32,
            max_text_len=12,
            d_model=32,
            n_heads=2,
            conv_channels=(8, 16, 16),
            text_width=32,
            camera_tokens=2,
        ),
        expert=ExpertConfig(
            d_model=32, n_layers=1, n_heads=2, flow_steps=4, n_bins=32, parallel_decoding=True
        ),
        chunk_size=4,
        action_space="delta",
    ),
    # A transformer backbone, fast on two CPU cores, a few MB on disk; 5 Euler steps as GR00T.
    # The conv stem learns object positions from scratch much faster than a strided patch conv.
    "small": VLAConfig(backbone=BackboneConfig(stem="conv"), expert=ExpertConfig(flow_steps=5)),
    # What the project ships: a FiLM CNN reads 64x64 images in the instruction's light, and
    # the heads predict joint-target deltas (docs/design/shipped-models.md).
    "film": VLAConfig(
        backbone=BackboneConfig(arch="film", image_height=64, image_width=64, max_text_len=16),
        expert=ExpertConfig(d_model=128, n_layers=2, flow_steps=5, parallel_decoding=True),
        action_space="delta",
    ),
    # The shape of pi0 (~3B parameters, 3 cameras at 224x224): GPU benchmarks only.
    "pi0-scale": VLAConfig(
        backbone=BackboneConfig(
            camera_names=("front", "left_wrist", "right_wrist"),
            image_height=224,
            image_width=224,
            patch_size=14,
            d_model=2048,
            n_layers=32,
            n_heads=16,
            mlp_ratio=8,
        ),
        expert=ExpertConfig(d_model=1024, n_layers=18, n_heads=8),
        chunk_size=50,
    ),
}


def get_preset(name: str) -> VLAConfig:
    """The named size preset; unknown names list the valid ones."""
    try:
        return PRESETS[name]
    except KeyError:
        raise UnknownNameError("preset", name, PRESETS) from None
