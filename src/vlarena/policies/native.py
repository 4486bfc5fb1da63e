"""The two native VLA families as policies: flow matching (`vla-flow`) and tokens (`vla-ar`)."""

import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Self

import numpy as np
import torch
from torch import nn

from vlarena.errors import CheckpointError, InvalidObservationError, UnknownNameError
from vlarena.policies.base import (
    CheckpointPolicy,
    SeededNoise,
    Seeds,
    SplitPolicy,
    VLFeatures,
    check_batch,
    check_seeds,
)
from vlarena.policies.checkpoint import (
    CONFIG_FILE,
    NORM_STATS_FILE,
    CheckpointMeta,
    read_card,
    read_metadata,
    read_section,
    read_weights,
    write_checkpoint,
)
from vlarena.policies.config import VLA_CONFIG_JSON, VLAConfig, get_preset
from vlarena.policies.device import DeviceConfig
from vlarena.policies.networks import (
    ActionHead,
    Conditioning,
    FlowExpert,
    TokenDecoder,
    make_backbone,
)
from vlarena.policies.networks.tokenizer import encode_instructions
from vlarena.policies.normalization import NORM_STATS_JSON, Normalizer, NormStats
from vlarena.policies.registry import get_policy_type, policy_types, register_policy
from vlarena.types import ActionChunk, ModelInfo, Observation, RobotState


class NativeVLA(nn.Module):
    """Backbone + action head + normalization: raw robot tensors in, raw actions out.

    In the delta action space the head's (normalized) outputs are joint targets relative to the
    joint positions of the state it was given; `act` adds them back, so callers always see
    absolute targets.
    """

    def __init__(self, cfg: VLAConfig, head: type[ActionHead], norm_stats: NormStats) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = make_backbone(cfg.backbone)
        self.head = head(cfg)
        self.normalizer = Normalizer(norm_stats, cfg.action_dim)

    @property
    def dtype(self) -> torch.dtype:
        return self.head.dtype

    def features(
        self, images: torch.Tensor, text_ids: torch.Tensor, text_pad: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 images (B, C, H, W, 3) and byte tokens → feature tokens and their padding."""
        pixels = images.permute(0, 1, 4, 2, 3).to(self.dtype) / 127.5 - 1.0
        return self.backbone(pixels, text_ids, text_pad)

    def condition(
        self,
        tokens: torch.Tensor,
        padding: torch.Tensor,
        state: torch.Tensor,
        sensor: torch.Tensor | None,
    ) -> Conditioning:
        """Raw state (B, 2J) and sensor window (B, T, D) in float32 → head conditioning."""
        norm_sensor = None if sensor is None else self.normalizer.sensor(sensor).to(self.dtype)
        return self.head.condition(
            tokens, padding, self.normalizer.state(state).to(self.dtype), norm_sensor
        )

    def act(
        self, cond: Conditioning, noise: torch.Tensor, state: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Raw float32 actions (B, H, D) and optional confidence (B,), from float32 noise and
        the raw state (B, 2J) the conditioning was made from."""
        actions, confidence = self.head.sample(cond, noise)
        if self.head.unit_actions:
            raw = self.normalizer.actions_from_unit(actions)
        else:
            raw = self.normalizer.actions_from_standard(actions)
        return self._shift(raw, state, 1.0), confidence

    def loss(self, cond: Conditioning, actions: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """Training loss for raw target actions (B, H, D) from raw states (B, 2J)."""
        actions = self._shift(actions, state, -1.0)
        if self.head.unit_actions:
            target = self.normalizer.actions_to_unit(actions)
        else:
            target = self.normalizer.actions_to_standard(actions)
        return self.head.loss(cond, target)

    def _shift(self, actions: torch.Tensor, state: torch.Tensor, sign: float) -> torch.Tensor:
        """Add (sign 1) or subtract (-1) the joint positions on the relative action dims."""
        dims = self.cfg.relative_dims
        if not dims:
            return actions
        offset = torch.zeros_like(actions[:, :1])
        offset[..., :dims] = state[:, None, :dims].to(actions.dtype)
        return actions + sign * offset


class NativeVLAPolicy(CheckpointPolicy, SplitPolicy):
    """A native VLA network behind the policy interface; subclasses pick the action head."""

    head_type: type[ActionHead]

    def __init__(
        self,
        config: VLAConfig,
        meta: CheckpointMeta,
        norm_stats: NormStats,
        device: DeviceConfig,
        weights: dict[str, torch.Tensor] | None = None,
        seed: int = 0,
        card: str = "",
    ) -> None:
        _check_stats(config, norm_stats)
        if weights is None:
            with _INIT_LOCK, torch.random.fork_rng(devices=[]):
                torch.default_generator.manual_seed(seed)  # CPU only: CUDA RNG untouched
                model = NativeVLA(config, self.head_type, norm_stats)
        else:
            with torch.device("meta"):  # no random init that the weights would overwrite
                model = NativeVLA(config, self.head_type, norm_stats)
            try:
                model.load_state_dict(weights, strict=True, assign=True)
            except RuntimeError as exc:
                raise CheckpointError(f"weights do not match the config: {exc}") from None
            model.normalizer = Normalizer(norm_stats, config.action_dim)  # buffers: not weights
        model.backbone.to(device.dtype)
        model.head.to(device.dtype)  # the normalizer stays in float32
        self.model = model.to(device.torch_device()).eval()
        if device.compile:
            model.backbone.compile()
            model.head.compile()
        self.config, self.meta, self.norm_stats = config, meta, norm_stats
        self._device = self.model.normalizer.state_mean.device
        self._seeded = SeededNoise(seed)
        state_low, state_high = norm_stats.state_limits()
        self._info = ModelInfo(
            name=meta.name,
            version=meta.version,
            policy_type=self.policy_type,
            action_dim=config.action_dim,
            chunk_size=config.chunk_size,
            camera_names=config.backbone.camera_names,
            image_height=config.backbone.image_height,
            image_width=config.backbone.image_width,
            state_dim=config.state_dim,
            sensor_window=config.sensor_window,
            sensor_dim=config.sensor_dim,
            embodiments=config.embodiments,
            supports_split=True,
            num_params=sum(p.numel() for p in model.parameters()),
            state_low=state_low,
            state_high=state_high,
            card=card,
        )

    @classmethod
    def create(
        cls,
        config: VLAConfig,
        name: str,
        *,
        norm_stats: NormStats | None = None,
        seed: int = 0,
        device: DeviceConfig | None = None,
    ) -> Self:
        """A freshly initialized model (weights drawn from `seed`)."""
        stats = norm_stats or NormStats.identity(
            config.state_dim, config.action_dim, config.sensor_dim
        )
        meta = CheckpointMeta(policy_type=cls.policy_type, name=name)
        return cls(config, meta, stats, device or DeviceConfig(), seed=seed)

    @classmethod
    def parameter_count(cls, config: VLAConfig) -> int:
        """Parameters of a model of this config, counted without allocating its weights."""
        stats = NormStats.identity(config.state_dim, config.action_dim, config.sensor_dim)
        with torch.device("meta"):
            model = NativeVLA(config, cls.head_type, stats)
        return sum(p.numel() for p in model.parameters())

    @classmethod
    def load(cls, path: Path, device: DeviceConfig) -> Self:
        meta = read_metadata(path)
        if meta.policy_type != cls.policy_type:
            raise CheckpointError(
                f"{path} holds a {meta.policy_type!r} checkpoint, not {cls.policy_type!r}"
            )
        config = read_section(path, CONFIG_FILE, VLA_CONFIG_JSON)
        norm_stats = read_section(path, NORM_STATS_FILE, NORM_STATS_JSON)
        card = read_card(path, meta)
        return cls(config, meta, norm_stats, device, read_weights(path), card=card)

    def save(self, path: Path) -> None:
        """Write this model as a checkpoint directory."""
        write_checkpoint(
            path,
            self.meta,
            VLA_CONFIG_JSON.dumps(self.config),
            NORM_STATS_JSON.dumps(self.norm_stats),
            self.model.state_dict(),
        )

    @property
    def info(self) -> ModelInfo:
        return self._info

    @torch.inference_mode()
    def predict(
        self, observations: Sequence[Observation], seeds: Seeds = None
    ) -> list[ActionChunk]:
        started = time.perf_counter()
        check_batch("observations", observations, Observation)
        check_seeds(seeds, len(observations))  # before the expensive stage, not after it
        features = self.extract_features(observations)  # validates every observation
        return self._act(features, [obs.state for obs in observations], seeds, started)

    @torch.inference_mode()
    def extract_features(self, observations: Sequence[Observation]) -> VLFeatures:
        check_batch("observations", observations, Observation)
        for obs in observations:
            self._info.check(obs)
        cams = self.config.backbone.camera_names
        images = np.stack([np.stack([obs.images[c] for c in cams]) for obs in observations])
        backbone = self.config.backbone
        ids, pad = encode_instructions(
            backbone.arch, [obs.instruction for obs in observations], backbone.max_text_len
        )
        tokens, padding = self.model.features(
            torch.from_numpy(images).to(self._device), ids.to(self._device), pad.to(self._device)
        )
        return VLFeatures(tokens, padding, self._info.name)

    @torch.inference_mode()
    def predict_from_features(
        self, features: VLFeatures, states: Sequence[RobotState], seeds: Seeds = None
    ) -> list[ActionChunk]:
        started = time.perf_counter()
        self._check_features(features)
        check_batch("states", states, RobotState)
        if len(states) != features.batch_size:
            raise InvalidObservationError(
                f"{len(states)} states for a feature batch of {features.batch_size}"
            )
        check_seeds(seeds, len(states))
        for robot_state in states:
            self._info.check_state(robot_state)
        return self._act(features, states, seeds, started)

    def _act(
        self, features: VLFeatures, states: Sequence[RobotState], seeds: Seeds, started: float
    ) -> list[ActionChunk]:
        """The action stage on inputs already checked by the public caller."""
        state = torch.from_numpy(
            np.stack([np.concatenate([s.joint_positions, s.joint_velocities]) for s in states])
        )
        sensor = None
        if self.config.sensor_window:
            sensor = torch.from_numpy(np.stack([s.sensor_window for s in states]))  # type: ignore[misc]
            sensor = sensor.to(self._device)
        cond = self.model.condition(
            features.tokens, features.padding, state.to(self._device), sensor
        )
        actions, confidence = self.model.act(
            cond,
            self._seeded.draw(self.model.head.draw_noise, seeds, len(states)).to(self._device),
            state.to(self._device),
        )
        elapsed_ms = (time.perf_counter() - started) * 1000.0
        actions_np = actions.cpu().numpy()
        conf = [None] * len(states) if confidence is None else confidence.float().cpu().tolist()
        timing = {"policy": elapsed_ms}
        return [
            ActionChunk(actions_np[i], self._info.name, conf[i], timing, batch_size=len(states))
            for i in range(len(states))
        ]

    def _check_features(self, features: VLFeatures) -> None:
        if not isinstance(features, VLFeatures) or features.model_id != self._info.name:
            source = getattr(features, "model_id", type(features).__name__)
            raise InvalidObservationError(
                f"features come from {source!r}, not from model {self._info.name!r}"
            )
        tokens = features.tokens
        width = self.config.backbone.d_model
        if (
            tokens.dtype != self.model.dtype
            or tokens.device != self._device
            or tokens.ndim != 3
            or tokens.shape[2] != width
            or features.padding.shape != tokens.shape[:2]
        ):
            raise InvalidObservationError(
                f"features {tuple(tokens.shape)} {tokens.dtype} on {tokens.device} do not fit "
                f"model {self._info.name!r} (B, N, {width}) {self.model.dtype} on {self._device}"
            )


_INIT_LOCK = threading.Lock()  # fork_rng + seeding of the global CPU generator is not thread-safe


def native_policy_types() -> dict[str, type["NativeVLAPolicy"]]:
    """Registered policy types that are native VLA families, by name."""
    types = {name: get_policy_type(name) for name in policy_types()}
    return {name: cls for name, cls in types.items() if issubclass(cls, NativeVLAPolicy)}


def random_native(
    policy_type: str, preset: str, device: DeviceConfig | None = None
) -> "NativeVLAPolicy":
    """A native family at a size preset with random weights (a baseline), named
    `<type>-<preset>-random`; unknown types or presets list the valid ones."""
    natives = native_policy_types()
    if policy_type not in natives:
        raise UnknownNameError("native policy type", policy_type, natives)
    config = get_preset(preset)
    return natives[policy_type].create(config, f"{policy_type}-{preset}-random", device=device)


def _check_stats(config: VLAConfig, stats: NormStats) -> None:
    actions = len(stats.action_mean)
    per_step = actions == config.chunk_size * config.action_dim  # per chunk step and dimension
    expected = {"state": 2 * config.state_dim, "sensor": config.sensor_dim}
    actual = {"state": len(stats.state_mean), "sensor": len(stats.sensor_mean)}
    if expected != actual or (actions != config.action_dim and not per_step):
        raise CheckpointError(
            f"normalization stats sizes {actual} with {actions} action values do not match the "
            f"config {expected} with {config.action_dim} (or {config.chunk_size}x"
            f"{config.action_dim}) action values"
        )


@register_policy
class FlowVLAPolicy(NativeVLAPolicy):
    """Flow-matching VLA: denoises an action chunk in `flow_steps` Euler steps."""

    policy_type = "vla-flow"
    head_type = FlowExpert


@register_policy
class AutoregressiveVLAPolicy(NativeVLAPolicy):
    """Autoregressive VLA: decodes binned action chunks (step by step or all steps at once)."""

    policy_type = "vla-ar"
    head_type = TokenDecoder
