"""Model configs validate themselves; both patch stems give one token per patch; a config written
before a field existed keeps its old meaning."""

import json

import pytest
import torch

from vlarena.errors import ConfigError
from vlarena.policies import BackboneConfig, get_preset
from vlarena.policies.config import VLA_CONFIG_JSON
from vlarena.policies.networks.backbone import VLBackbone


@pytest.mark.parametrize("stem", ["patch", "conv"])
def test_both_stems_give_one_token_per_patch(stem: str) -> None:
    cfg = BackboneConfig(
        image_height=32,
        image_width=48,
        patch_size=8,
        stem=stem,
        d_model=32,
        n_layers=1,
        n_heads=2,
        max_text_len=8,
    )
    backbone = VLBackbone(cfg)
    images = torch.zeros(2, 2, 3, 32, 48)
    tokens, padding = backbone(
        images, torch.ones(2, 8, dtype=torch.long), torch.zeros(2, 8, dtype=torch.bool)
    )
    assert cfg.tokens_per_camera == 4 * 6
    assert tokens.shape == (2, 2 * 24 + 8, 32)
    assert padding.shape == (2, 56)


def test_stem_errors_are_clear() -> None:
    with pytest.raises(ConfigError, match="stem must be one of"):
        BackboneConfig(stem="resnet")
    with pytest.raises(ConfigError, match="divisible by 4"):
        BackboneConfig(image_height=30, image_width=30, patch_size=6, stem="conv")
    assert get_preset("small").backbone.stem == "conv"


def test_a_config_written_before_parallel_decoding_existed_decodes_step_by_step() -> None:
    film = get_preset("film")
    assert film.expert.parallel_decoding  # what make ship trains
    written = json.loads(VLA_CONFIG_JSON.dumps(film))
    del written["expert"]["parallel_decoding"]
    assert not VLA_CONFIG_JSON.loads(json.dumps(written).encode()).expert.parallel_decoding
