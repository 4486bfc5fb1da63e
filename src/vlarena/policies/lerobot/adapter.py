"""LeRobot policies behind our `Policy` seam, loaded and called with LeRobot's own code.

A checkpoint is loaded as LeRobot's policy server loads one: `get_policy_class(type)
.from_pretrained(dir)` and `make_pre_post_processors(config, pretrained_path=dir)`. A batch of
our observations becomes one LeRobot batch (`observation.images.<camera>` as float CHW in
[0, 1], `observation.state` from the joint positions, `task` from the instructions), goes
through the preprocessor, `predict_action_chunk` and the postprocessor, and comes back as one
`ActionChunk` per observation: the first `n_action_steps` actions the policy predicts.

This module imports LeRobot; it runs in the LeRobot environment (`make install-lerobot`).
"""

import json
import math
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lerobot
import numpy as np
import torch
from lerobot.configs.policies import PreTrainedConfig
from lerobot.configs.types import FeatureType
from lerobot.policies.common.flow_matching import euler_integrate
from lerobot.policies.common.vla_utils import make_att_2d_masks, prepare_attention_masks_4d
from lerobot.policies.factory import get_policy_class, make_pre_post_processors
from lerobot.processor import AbsoluteActionsProcessorStep, NormalizerProcessorStep
from lerobot.processor.converters import create_transition
from lerobot.utils.constants import (
    ACTION,
    OBS_IMAGES,
    OBS_LANGUAGE_ATTENTION_MASK,
    OBS_LANGUAGE_TOKENS,
    OBS_STATE,
)
from safetensors import safe_open
from transformers import DynamicCache

from vlarena.errors import CheckpointError, ConfigError, InvalidObservationError, UnknownNameError
from vlarena.policies.base import (
    Policy,
    SeededNoise,
    Seeds,
    SplitPolicy,
    VLFeatures,
    check_batch,
    check_seeds,
)
from vlarena.policies.device import DeviceConfig
from vlarena.policies.lerobot.layout import LeRobotOptions, policy_type
from vlarena.types import ActionChunk, ModelInfo, Observation, RobotState

NoiseShape = Callable[[Any], tuple[int, int]]  # a config → one sample's noise (H, D)


@dataclass(frozen=True)
class Family:
    """How our adapter calls one LeRobot policy type."""

    policy: type["LeRobotPolicy"]  # the adapter class (a SplitPolicy where the split exists)
    noise: NoiseShape | None = None  # the shape of one sample's noise; None: deterministic
    history: bool = False  # it stacks `n_obs_steps` observations (we repeat the current one)


class LeRobotPolicy(Policy):
    """A LeRobot pretrained policy: a batch of our observations in, one chunk each out."""

    def __init__(
        self, policy: Any, processors: tuple[Any, Any], family: Family, info: ModelInfo
    ) -> None:
        self._policy, (self._pre, self._post), self._family = policy, processors, family
        self._info = info
        self._config: Any = policy.config
        self._device = next(policy.parameters()).device  # where its weights are: cuda:0, not cuda
        # (our camera, the checkpoint's camera) for every camera the model takes
        self._cameras = list(zip(info.camera_names, _their_cameras(policy.config), strict=True))
        self._seeded = SeededNoise()
        # LeRobot's pipeline steps keep the call in progress on themselves (the tokenizer reads
        # the task from it): one thread at a time. With relative actions the postprocessor adds
        # back the state of the preprocessor's last call, so a whole call holds the lock.
        self._pipeline_lock = threading.RLock()
        self._whole_call_lock = self._pipeline_lock if relative_actions(self._post) else None

    @property
    def info(self) -> ModelInfo:
        return self._info

    def predict(
        self, observations: Sequence[Observation], seeds: Seeds = None
    ) -> list[ActionChunk]:
        started = time.perf_counter()
        self._check(observations, seeds)
        with self._whole_call_lock or nullcontext(), torch.inference_mode():
            batch = self._preprocess(observations)
            noise = self._noise(seeds, len(observations))
            actions = self._policy.predict_action_chunk(
                batch, **({} if noise is None else {"noise": noise})
            )
            return self._chunks(actions, started)

    def _check(self, observations: Sequence[Observation], seeds: Seeds) -> None:
        check_batch("observations", observations, Observation)
        check_seeds(seeds, len(observations))
        for obs in observations:
            self._info.check(obs)

    def _preprocess(self, observations: Sequence[Observation]) -> dict[str, Any]:
        """Our observations as one preprocessed LeRobot batch."""
        batch: dict[str, Any] = {
            f"{OBS_IMAGES}.{theirs}": torch.from_numpy(
                np.stack([obs.images[ours] for obs in observations])
            )
            .permute(0, 3, 1, 2)
            .contiguous()  # channels-last strides make convolutions ~1.5x slower here
            .float()
            .div(255.0)
            for ours, theirs in self._cameras
        }
        batch[OBS_STATE] = _states(obs.state for obs in observations)
        batch["task"] = [obs.instruction for obs in observations]
        with self._pipeline_lock:
            batch = self._pre(batch)
        if self._family.history:  # no history is kept per robot: the current one, repeated
            steps = self._config.n_obs_steps
            for key in [OBS_STATE, *(f"{OBS_IMAGES}.{theirs}" for _, theirs in self._cameras)]:
                value = batch[key].unsqueeze(1)
                batch[key] = value.expand(-1, steps, *value.shape[2:])
        return batch

    def _noise(self, seeds: Seeds, batch: int) -> torch.Tensor | None:
        """Per-sample noise, each from its own seed, so batching never changes a result."""
        if self._family.noise is None:
            return None
        shape = self._family.noise(self._config)
        draws = self._seeded.draw(lambda rng: torch.randn(shape, generator=rng), seeds, batch)
        return draws.to(self._device)

    def _chunks(self, actions: torch.Tensor, started: float) -> list[ActionChunk]:
        """The model's normalized actions (B, H', D') as our chunks, timed from `started`."""
        actions = actions[:, : self._info.chunk_size, : self._info.action_dim]
        with self._pipeline_lock:
            raw = self._post(actions).float().cpu().numpy()
        timing = {"policy": (time.perf_counter() - started) * 1000.0}
        return [
            ActionChunk(raw[i], self._info.name, timing_ms=timing, batch_size=len(raw))
            for i in range(len(raw))
        ]


class LeRobotPi0Policy(LeRobotPolicy, SplitPolicy):
    """pi0, split: the vision-language prefix (its key/value cache) is the slow stage, the flow
    expert denoising from the fresh robot state is the fast stage.

    The features are the prefix's keys and values, one feature token per prefix token: for each
    layer, keys then values, each as (kv_heads x head_dim) values per token.
    """

    def __init__(
        self, policy: Any, processors: tuple[Any, Any], family: Family, info: ModelInfo
    ) -> None:
        super().__init__(policy, processors, family, info)
        language = policy.model.paligemma_with_expert.paligemma.model.language_model
        text = language.config
        # (layers, kv heads, head dim) of the prefix's key/value cache, and its dtype
        self._layout = (text.num_hidden_layers, text.num_key_value_heads, text.head_dim)
        self._cache_dtype = language.layers[0].self_attn.k_proj.weight.dtype  # not SigLIP's

    def extract_features(self, observations: Sequence[Observation]) -> VLFeatures:
        self._check(observations, None)
        model = self._policy.model
        with torch.inference_mode():
            batch = self._preprocess(observations)
            images, image_masks = self._policy._preprocess_images(batch)
            embeddings, pad, att = model.embed_prefix(
                images, image_masks, batch[OBS_LANGUAGE_TOKENS], batch[OBS_LANGUAGE_ATTENTION_MASK]
            )
            masks = prepare_attention_masks_4d(make_att_2d_masks(pad, att))
            language = model.paligemma_with_expert.paligemma.model.language_model
            language.config._attn_implementation = "eager"  # as LeRobot's own sampling sets it
            _, cache = model.paligemma_with_expert.forward(
                attention_mask=masks,
                position_ids=torch.cumsum(pad, dim=1) - 1,
                past_key_values=None,
                inputs_embeds=[embeddings, None],
                use_cache=True,
            )
            tokens = torch.cat(
                [t.transpose(1, 2).flatten(2) for keys, values, _ in cache for t in (keys, values)],
                dim=-1,
            )
        return VLFeatures(tokens, ~pad, self._info.name)

    def predict_from_features(
        self, features: VLFeatures, states: Sequence[RobotState], seeds: Seeds = None
    ) -> list[ActionChunk]:
        started = time.perf_counter()
        check_batch("states", states, RobotState)
        self._check_features(features, len(states))
        check_seeds(seeds, len(states))
        for state in states:
            self._info.check_state(state)
        model = self._policy.model
        with torch.inference_mode():
            state = self._policy.prepare_state({OBS_STATE: self._normalized_states(states)})
            prefix_pad = ~features.padding
            cache = self._cache(features.tokens)
            noise = self._noise(seeds, len(states))
            assert noise is not None  # pi0 samples noise

            def velocity(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
                return model.denoise_step(
                    state=state,
                    prefix_pad_masks=prefix_pad,
                    past_key_values=cache,
                    x_t=x_t,
                    timestep=t,
                )

            actions = euler_integrate(velocity, noise, self._config.num_inference_steps)
            return self._chunks(actions, started)

    def _normalized_states(self, states: Sequence[RobotState]) -> torch.Tensor:
        """The states as the preprocessor's normalizer leaves them (on the model's device)."""
        state = _states(states).to(self._device)
        with self._pipeline_lock:
            for step in self._pre.steps:
                if isinstance(step, NormalizerProcessorStep):
                    observation = step(create_transition(observation={OBS_STATE: state}))
                    state = observation["observation"][OBS_STATE]
        return state

    def _cache(self, tokens: torch.Tensor) -> DynamicCache:
        layers, heads, dim = self._layout
        parts = tokens.reshape(*tokens.shape[:2], 2 * layers, heads, dim).permute(2, 0, 3, 1, 4)
        return DynamicCache(tuple((parts[2 * i], parts[2 * i + 1], None) for i in range(layers)))

    def _check_features(self, features: VLFeatures, batch: int) -> None:
        if not isinstance(features, VLFeatures) or features.model_id != self._info.name:
            source = getattr(features, "model_id", type(features).__name__)
            raise InvalidObservationError(
                f"features come from {source!r}, not from model {self._info.name!r}"
            )
        tokens, padding = features.tokens, features.padding
        width = 2 * math.prod(self._layout)
        dtype = self._cache_dtype
        if (
            tokens.ndim != 3
            or tokens.shape[2] != width
            or tokens.dtype != dtype
            or tokens.device != self._device
            or padding.shape != tokens.shape[:2]
            or padding.dtype != torch.bool
            or padding.device != self._device
        ):
            raise InvalidObservationError(
                f"features {tuple(tokens.shape)} {tokens.dtype} on {tokens.device} (padding "
                f"{tuple(padding.shape)} {padding.dtype}) do not fit model {self._info.name!r}: "
                f"(B, N, {width}) {dtype} on {self._device}, boolean (B, N) padding"
            )
        if features.batch_size != batch:
            raise InvalidObservationError(
                f"{batch} states for a feature batch of {features.batch_size}"
            )


def _chunk_noise(config: Any) -> tuple[int, int]:
    return config.chunk_size, config.max_action_dim


FAMILIES: dict[str, Family] = {
    "act": Family(LeRobotPolicy),
    "diffusion": Family(
        LeRobotPolicy, noise=lambda c: (c.horizon, c.action_feature.shape[0]), history=True
    ),
    "smolvla": Family(LeRobotPolicy, noise=_chunk_noise),
    "pi0": Family(LeRobotPi0Policy, noise=_chunk_noise),
    # pi0.5 puts the discretized state into the language prefix: no stage runs without it.
    "pi05": Family(LeRobotPolicy, noise=_chunk_noise),
}


def load(directory: str | Path, options: LeRobotOptions, device: DeviceConfig) -> LeRobotPolicy:
    """A LeRobot checkpoint directory as a policy (CheckpointError, ConfigError, UnknownNameError
    name what does not fit, at load time rather than at the first request)."""
    path = Path(directory)
    kind = policy_type(path)
    if kind not in FAMILIES:
        raise UnknownNameError("LeRobot policy type", kind, FAMILIES)
    if device.precision != "fp32" or device.compile:
        raise ConfigError(
            "LeRobot policies run as their checkpoint configures them (its dtype, no "
            "torch.compile): leave the precision at fp32 and compilation off"
        )
    target = str(device.torch_device())
    try:
        config = PreTrainedConfig.from_pretrained(str(path))
        config.device = target
        if hasattr(config, "pretrained_backbone_weights"):
            # ACT and Diffusion would first fetch ImageNet weights from the internet (through
            # torch.hub's pickle loader), which the checkpoint's own weights then replace.
            config.pretrained_backbone_weights = None
        policy = get_policy_class(kind).from_pretrained(str(path), config=config)
        policy.to(target).eval()
        overrides = {"device_processor": {"device": target}}
        processors = make_pre_post_processors(
            policy.config,
            pretrained_path=str(path),
            preprocessor_overrides=overrides,
            postprocessor_overrides={"device_processor": {"device": "cpu"}},
        )
    except Exception as exc:  # LeRobot's loaders raise many kinds; any means "cannot load"
        raise CheckpointError(f"LeRobot cannot load {path}: {exc}") from None
    params = sum(p.numel() for p in policy.parameters())
    _check_complete(path, params)
    family = FAMILIES[kind]
    if kind == "pi0" and relative_actions(processors[1]):
        family = Family(LeRobotPolicy, family.noise)  # actions relative to the slow stage's state
    info = model_info(policy.config, kind, options, path, family, params)
    return family.policy(policy, processors, family, info)


def relative_actions(postprocessor: Any) -> bool:
    """Whether a postprocessor adds back the state of its preprocessor's last call."""
    steps = getattr(postprocessor, "steps", [])
    return any(isinstance(s, AbsoluteActionsProcessorStep) and s.enabled for s in steps)


def _check_complete(path: Path, params: int) -> None:
    """CheckpointError unless model.safetensors holds as many values as the model has
    parameters: LeRobot fills weights a file lacks with random ones, with a warning at most."""
    try:
        with safe_open(str(path / "model.safetensors"), "pt") as weights:
            stored = sum(math.prod(weights.get_slice(k).get_shape()) for k in weights.keys())  # noqa: SIM118
    except Exception as exc:  # its reader's own error types
        raise CheckpointError(f"cannot read {path / 'model.safetensors'}: {exc}") from None
    if stored < params:
        raise CheckpointError(
            f"{path / 'model.safetensors'} holds {stored:,} values for a model of {params:,} "
            "parameters: weights are missing"
        )


def model_info(
    config: PreTrainedConfig,
    kind: str,
    options: LeRobotOptions,
    path: Path,
    family: Family,
    num_params: int,
) -> ModelInfo:
    """Our contract for a LeRobot config: its cameras (renamed by `options`), one image size,
    its state and action sizes, the chunk it executes (ConfigError where they do not fit)."""
    theirs = _their_cameras(config)
    unknown = sorted({t for _, t in options.cameras} - set(theirs))
    if unknown:
        raise ConfigError(f"camera map names {unknown}; {path} has cameras {theirs}")
    if not theirs:
        raise ConfigError(f"{path} takes no camera images")
    sizes = {tuple(config.input_features[f"{OBS_IMAGES}.{t}"].shape) for t in theirs}
    if len(sizes) != 1 or len(next(iter(sizes))) != 3 or next(iter(sizes))[0] != 3:
        raise ConfigError(f"{path} takes images of shapes {sorted(sizes)}; one 3xHxW is needed")
    _, height, width = next(iter(sizes))
    state = config.input_features.get(OBS_STATE)
    action = config.output_features.get(ACTION)
    if state is None or len(state.shape) != 1 or action is None or len(action.shape) != 1:
        raise ConfigError(f"{path} needs a 1-D observation.state and a 1-D action")
    cameras = tuple(options.our_camera(t) for t in theirs)
    if len(set(cameras)) != len(cameras):
        raise ConfigError(
            f"camera map {dict(options.cameras)} gives two of {path}'s cameras {theirs} the same "
            f"name: {list(cameras)}"
        )
    card = {"trained": f"LeRobot {kind} checkpoint"}  # no local path: cards are public
    return ModelInfo(
        name=options.name or path.resolve().name,
        version=f"lerobot-{lerobot.__version__}",
        policy_type=f"lerobot-{kind}",
        action_dim=action.shape[0],
        chunk_size=config.n_action_steps,
        camera_names=cameras,
        image_height=height,
        image_width=width,
        state_dim=state.shape[0],
        embodiments=(options.embodiment,),
        supports_split=issubclass(family.policy, SplitPolicy),
        num_params=num_params,
        card=json.dumps(card),
    )


def _their_cameras(config: Any) -> list[str]:
    """The checkpoint's camera names, in its order (padding cameras it fills itself left out)."""
    return [
        key.removeprefix(f"{OBS_IMAGES}.")
        for key, feature in config.input_features.items()
        if feature.type is FeatureType.VISUAL and ".empty_camera_" not in key
    ]


def _states(states: Any) -> torch.Tensor:
    """Joint positions (B, J): LeRobot's observation.state."""
    return torch.from_numpy(np.stack([s.joint_positions for s in states]))
