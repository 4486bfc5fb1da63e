"""Tiny random-weight LeRobot checkpoints, made with LeRobot itself, for tests and benchmarks.

No hub is reachable here, so what a real checkpoint downloads is made locally too: SmolVLA's
VLM is a tiny SmolVLM built from a transformers config, with a character-level tokenizer; pi0
and pi0.5 get the same tokenizer in place of PaliGemma's. Each checkpoint fits our Panda: the
`front` and `wrist` cameras, 9 joint positions in, 8 action values out.

LeRobot builds pi0 and pi0.5 only at their released sizes (a 2B PaliGemma with a 400M SigLIP and
a 257k vocabulary, a 300M expert); `tiny_pi_sizes` makes it build test-sized ones while it is
active, for making such a checkpoint and for loading it again.
"""

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

import torch
from lerobot.configs.types import FeatureType, PolicyFeature
from lerobot.policies.factory import get_policy_class, make_policy_config, make_pre_post_processors
from lerobot.policies.pi0 import modeling_pi0
from lerobot.policies.pi05 import modeling_pi05
from lerobot.processor import tokenizer_processor
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    PreTrainedTokenizerFast,
    SmolVLMConfig,
    SmolVLMImageProcessor,
    SmolVLMProcessor,
    SmolVLMVideoProcessor,
)
from transformers.models.auto import CONFIG_MAPPING

from vlarena.sim.world import ARM_JOINTS, CAMERAS

TYPES = ("act", "diffusion", "smolvla", "pi0", "pi05")
IMAGE_SIZE = 64
STATE_DIM = ARM_JOINTS + 2  # 7 arm joints and 2 finger slides
ACTION_DIM = ARM_JOINTS + 1  # 7 joint targets and the gripper
TINY_VOCAB = 128  # the character-level tokenizer's ids all fit
_SPECIAL = ["<pad>", "<unk>", "<bos>", "<eos>", "<fake_token_around_image>", "<global-img>"]
_IMAGE_TOKEN = "<image>"

# Sizes of each type's tiny config (LeRobot's field names).
_SIZES: dict[str, dict[str, Any]] = {
    "act": {
        "chunk_size": 10,
        "n_action_steps": 10,
        "dim_model": 32,
        "n_heads": 2,
        "dim_feedforward": 64,
        "n_encoder_layers": 1,
        "n_decoder_layers": 1,
        "n_vae_encoder_layers": 1,
        "latent_dim": 8,
        "pretrained_backbone_weights": None,
    },
    "diffusion": {
        "horizon": 8,
        "n_action_steps": 4,
        "n_obs_steps": 2,
        "down_dims": (16, 32),
        "diffusion_step_embed_dim": 16,
        "num_inference_steps": 3,
        "pretrained_backbone_weights": None,
        "crop_shape": None,
        "spatial_softmax_num_keypoints": 8,
        "kernel_size": 3,
        "n_groups": 4,
    },
    "smolvla": {
        "load_vlm_weights": False,
        "chunk_size": 10,
        "n_action_steps": 10,
        "num_vlm_layers": 2,
        "num_steps": 3,
        "resize_imgs_with_padding": (IMAGE_SIZE, IMAGE_SIZE),
        "tokenizer_max_length": 16,
        "max_state_dim": 16,
        "max_action_dim": 16,
    },
    "pi0": {
        "chunk_size": 10,
        "n_action_steps": 10,
        "num_inference_steps": 3,
        "max_state_dim": 16,
        "max_action_dim": 16,
        "image_resolution": (IMAGE_SIZE, IMAGE_SIZE),
        "tokenizer_max_length": 16,
    },
}
_SIZES["pi05"] = _SIZES["pi0"]


def build(
    kind: str,
    out: Path,
    cameras: tuple[str, ...] = CAMERAS,
    *,
    image_size: int = IMAGE_SIZE,
    vlm: Path | None = None,
    **config_fields: Any,
) -> Path:
    """Write a random-weight `kind` checkpoint to `out` as LeRobot saves one: tiny, or with
    `vlm` (a SmolVLA on that VLM directory) at LeRobot's default sizes for everything else;
    `config_fields` set more of its LeRobot config."""
    if kind not in TYPES:
        raise ValueError(f"no tiny {kind!r}; valid: {', '.join(TYPES)}")
    out.mkdir(parents=True, exist_ok=True)
    image = PolicyFeature(FeatureType.VISUAL, (3, image_size, image_size))
    inputs = {f"observation.images.{c}": image for c in cameras}
    inputs["observation.state"] = PolicyFeature(FeatureType.STATE, (STATE_DIM,))
    sizes = (_SIZES[kind] if vlm is None else {}) | config_fields
    if kind == "smolvla":
        sizes = sizes | {"vlm_model_name": str(vlm or smolvlm(out / "vlm"))}
    config = make_policy_config(
        kind,
        input_features=inputs,
        output_features={"action": PolicyFeature(FeatureType.ACTION, (ACTION_DIM,))},
        device="cpu",
        **sizes,
    )
    with torch.random.fork_rng(devices=[]), tiny_pi_sizes():
        torch.manual_seed(0)
        policy = get_policy_class(kind)(config)
    with _local_tokenizer(tiny_tokenizer(out / "tokenizer")):
        pre, post = make_pre_post_processors(config, dataset_stats=_stats(inputs))
    for step in pre.steps:  # the saved pipeline names the local tokenizer, not the hub's
        if isinstance(step, tokenizer_processor.TokenizerProcessorStep) and kind != "smolvla":
            step.tokenizer_name = str(out / "tokenizer")
    policy.save_pretrained(out)
    pre.save_pretrained(out)
    post.save_pretrained(out)
    return out


def _stats(inputs: dict[str, PolicyFeature]) -> dict[str, dict[str, torch.Tensor]]:
    """Normalization stats of a plausible dataset (images in [0, 1], joints near zero)."""
    stats = {}
    for key, feature in {
        **inputs,
        "action": PolicyFeature(FeatureType.ACTION, (ACTION_DIM,)),
    }.items():
        shape = (3, 1, 1) if feature.type is FeatureType.VISUAL else feature.shape
        image = len(shape) == 3
        low, high = (0.0, 1.0) if image else (-3.0, 3.0)
        stats[key] = {
            "mean": torch.full(shape, 0.5 if image else 0.0),
            "std": torch.full(shape, 0.25 if image else 1.0),
            "min": torch.full(shape, low),
            "max": torch.full(shape, high),
            "q01": torch.full(shape, low),  # pi0.5 normalizes by quantiles
            "q99": torch.full(shape, high),
        }
    return stats


def tiny_tokenizer(out: Path) -> Path:
    """A character-level fast tokenizer with SmolVLM's special tokens, saved to `out`."""
    chars = [chr(c) for c in range(32, 127)] + ["\n"]
    vocab = {t: i for i, t in enumerate([*_SPECIAL, _IMAGE_TOKEN, *chars])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    backend.add_special_tokens([*_SPECIAL, _IMAGE_TOKEN])
    tokenizer = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=backend,
        pad_token="<pad>",
        unk_token="<unk>",
        bos_token="<bos>",
        eos_token="<eos>",
        extra_special_tokens={
            "fake_image_token": "<fake_token_around_image>",
            "global_image_token": "<global-img>",
            "image_token": _IMAGE_TOKEN,
        },
    )
    tokenizer.save_pretrained(out)
    return out


TINY_SMOLVLM: dict[str, Any] = {  # 4 text layers of width 64, one vision layer
    "text_config": {
        "model_type": "llama",
        "vocab_size": TINY_VOCAB,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "max_position_embeddings": 2048,
    },
    "vision_config": {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "image_size": IMAGE_SIZE,
        "patch_size": 16,
    },
    "scale_factor": 2,
}


def smolvlm(out: Path, config: dict[str, Any] = TINY_SMOLVLM) -> Path:
    """A SmolVLM of `config` (SmolVLMConfig's fields) with the character-level tokenizer and an
    image processor at its vision tower's size, saved to `out`. SmolVLA builds its VLM from
    this config and keeps the weights in its own checkpoint, so none are saved here."""
    tokenizer = PreTrainedTokenizerFast.from_pretrained(tiny_tokenizer(out))
    image_token = tokenizer.convert_tokens_to_ids(_IMAGE_TOKEN)
    SmolVLMConfig(**config, image_token_id=image_token).save_pretrained(out)
    side = {"longest_edge": config["vision_config"]["image_size"]}
    SmolVLMProcessor(
        image_processor=SmolVLMImageProcessor(
            size=side, max_image_size=side, do_image_splitting=False
        ),
        tokenizer=tokenizer,
        video_processor=SmolVLMVideoProcessor(),
        image_seq_len=4,
    ).save_pretrained(out)
    return out


@contextmanager
def _local_tokenizer(directory: Path) -> Iterator[None]:
    """While active, the processors' hub tokenizer names load `directory` instead."""
    real = tokenizer_processor.AutoTokenizer.from_pretrained

    def load(name: str, *args: Any, **kwargs: Any) -> Any:
        local = name if Path(name).is_dir() else str(directory)
        return real(local, *args, **kwargs)

    with mock.patch.object(tokenizer_processor.AutoTokenizer, "from_pretrained", load):
        yield


@contextmanager
def tiny_pi_sizes() -> Iterator[None]:
    """While active, LeRobot's pi0 and pi0.5 build test-sized networks: both Gemmas 2 layers
    (widths 64 and 32), a one-layer SigLIP, a 128-token vocabulary."""
    gemma = CONFIG_MAPPING["gemma"]
    with ExitStack() as stack:
        for module in (modeling_pi0, modeling_pi05):
            paligemma = module.PaliGemmaForConditionalGenerationWithPiGemma
            for name, value in {
                "get_gemma_config": _gemma_sizes(module.GemmaConfig),
                "PaliGemmaForConditionalGenerationWithPiGemma": _small_paligemma(paligemma),
                "CONFIG_MAPPING": {
                    "paligemma": CONFIG_MAPPING["paligemma"],
                    "gemma": lambda **kw: gemma(**{**kw, "vocab_size": TINY_VOCAB}),
                },
            }.items():
                stack.enter_context(mock.patch.object(module, name, value))
        yield


def _gemma_sizes(config: Any) -> Any:
    def get(variant: str) -> Any:
        width = 64 if variant == "gemma_2b" else 32
        return config(
            width=width, depth=2, mlp_dim=2 * width, num_heads=2, num_kv_heads=1, head_dim=16
        )

    return get


def _small_paligemma(cls: Any) -> Any:
    def make(config: Any) -> Any:
        vision = config.vision_config
        vision.hidden_size, vision.intermediate_size = 32, 64
        vision.num_hidden_layers, vision.num_attention_heads = 1, 2
        vision.projection_dim = config.text_config.hidden_size
        config.text_config.vocab_size = config._vocab_size = TINY_VOCAB
        config.image_token_index = TINY_VOCAB - 1
        return cls(config=config)

    return make
