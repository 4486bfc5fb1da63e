"""The FiLM backbone, the word tokenizer and the delta action space, run for real."""

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from vlarena import Observation
from vlarena.data import TASK_TEMPLATES, DemoDataset
from vlarena.data.paraphrases import HELD_OUT_TEMPLATES
from vlarena.errors import ConfigError
from vlarena.policies import (
    PRESETS,
    BackboneConfig,
    FlowVLAPolicy,
    NativeVLAPolicy,
    VLAConfig,
    get_policy_type,
)
from vlarena.policies.networks import FilmBackbone
from vlarena.policies.networks.film import FilmCNN
from vlarena.policies.networks.tokenizer import (
    BOS_ID,
    PAD_ID,
    VOCAB_WORDS,
    encode_words,
    replace_words,
    word_id,
)
from vlarena.sim.world import COLORS

FILM = PRESETS["film-tiny"]
MakeObs = Callable[..., Observation]


def test_words_ignore_case_and_punctuation_and_keep_order() -> None:
    ids, pad = encode_words(["Lift the RED cube!", "lift the red cube", "the red lift cube"], 8)
    assert torch.equal(ids[0], ids[1])
    assert not torch.equal(ids[1], ids[2])
    assert ids[0, 0] == BOS_ID
    assert (ids[0, 5:] == PAD_ID).all()
    assert pad[0, 5:].all()
    long, long_pad = encode_words(["word " * 40], 8)
    assert not long_pad.any()
    assert long.shape == (1, 8)
    empty, _ = encode_words([""], 4)
    assert empty.tolist() == [[BOS_ID, PAD_ID, PAD_ID, PAD_ID]]


def test_every_task_word_and_colour_has_a_bucket_of_its_own() -> None:
    templates = [t for _, _, ts in TASK_TEMPLATES for t in ts]
    templates += [t for ts in HELD_OUT_TEMPLATES.values() for t in ts]
    words = {w for t in templates for w in re.findall(r"[a-z]+", t.lower())} | set(COLORS)
    words -= {"a", "b"}  # the colour placeholders
    ids, _ = encode_words(sorted(words), 2)
    assert len(set(ids[:, 1].tolist())) == len(words)


def test_word_noise_replaces_only_unkept_words_at_its_rate() -> None:
    ids, pad = encode_words(["put the red cube on the blue cube"] * 2000, 12)
    kept = torch.tensor([word_id("red"), word_id("blue")])
    assert torch.equal(replace_words(ids, 0.0, kept, torch.Generator()), ids)
    noisy = replace_words(ids, 0.25, kept, torch.Generator().manual_seed(0))
    changed = noisy != ids
    free = ~pad & (ids != BOS_ID) & ~torch.isin(ids, kept)  # 6 of the 8 words per row
    assert not changed[~free].any()  # BOS, padding and the colours stay
    assert 0.22 < changed[free].float().mean() < 0.28
    assert ((noisy[changed] > BOS_ID) & (noisy[changed] < VOCAB_WORDS)).all()  # word ids
    assert torch.equal(replace_words(ids, 0.25, kept, torch.Generator().manual_seed(0)), noisy)


def test_film_backbone_image_tokens_depend_on_the_words() -> None:
    torch.manual_seed(0)
    backbone = FilmBackbone(FILM.backbone).eval()
    images = torch.rand(2, 2, 3, 32, 32) * 2 - 1
    ids, pad = encode_words(["touch the red cube", "touch the blue cube"], 12)
    tokens, padding = backbone(images, ids, pad)
    n_tokens = 2 * FILM.backbone.camera_tokens + 1
    assert tokens.shape == (2, n_tokens, FILM.backbone.d_model)
    assert padding.shape == (2, n_tokens)
    assert not padding.any()
    for cnn in backbone.cameras:  # the modulation starts as the identity; give it weights
        assert isinstance(cnn, FilmCNN)
        torch.nn.init.normal_(cnn.film.weight, std=0.5)
    same = torch.cat([images[:1], images[:1]])
    tokens, _ = backbone(same, ids, pad)
    image_tokens = tokens[:, : 2 * FILM.backbone.camera_tokens]
    assert not torch.allclose(image_tokens[0], image_tokens[1], atol=1e-4)


def test_delta_actions_are_returned_as_absolute_targets(make_obs: MakeObs) -> None:
    policy = FlowVLAPolicy.create(FILM, "film", seed=0)
    model = policy.model
    model.head.sample = lambda cond, noise: (torch.zeros_like(noise), None)  # type: ignore[method-assign]
    obs = make_obs(policy.info)
    chunk = policy.predict([obs])[0].actions
    mean = np.array(policy.norm_stats.action_mean, dtype=np.float32)
    expected = mean.reshape(-1, 8) + np.zeros((FILM.chunk_size, 1), np.float32)
    expected[:, :7] += obs.state.joint_positions[:7]
    np.testing.assert_allclose(chunk, expected, rtol=1e-5, atol=1e-5)
    state = torch.randn(3, 18)
    actions = torch.randn(3, FILM.chunk_size, 8)
    shifted = model._shift(actions, state, -1.0)
    assert torch.equal(shifted[..., 7], actions[..., 7])  # the gripper stays absolute
    torch.testing.assert_close(model._shift(shifted, state, 1.0), actions)


def test_action_stats_are_fitted_to_relative_chunks(demo_dataset: Path) -> None:
    data = DemoDataset(demo_dataset)
    assert data.action_stats(4, 0) == data.norm_stats
    stats = data.action_stats(4, 7)
    frames = np.arange(len(data))
    chunks = data.action_chunks(frames, 4).copy()
    chunks[..., :7] -= np.asarray(data.state)[:, None, :7]
    np.testing.assert_allclose(stats.action_mean, chunks.reshape(len(data), -1).mean(0), atol=1e-6)
    assert stats.state_mean == data.norm_stats.state_mean
    assert max(stats.action_std[:7]) < max(data.norm_stats.action_std[:7])


def test_film_policy_split_equals_whole(family: str, make_obs: MakeObs) -> None:
    cls = get_policy_type(family)
    assert issubclass(cls, NativeVLAPolicy)
    policy = cls.create(FILM, "film", seed=0)
    obs = make_obs(policy.info)
    features = policy.extract_features([obs])
    whole = policy.predict([obs], seeds=[3])[0].actions
    split = policy.predict_from_features(features, [obs.state], seeds=[3])[0].actions
    np.testing.assert_allclose(whole, split, atol=1e-5)


def test_film_config_is_validated() -> None:
    with pytest.raises(ConfigError, match="arch must be one of"):
        BackboneConfig(arch="mamba")
    with pytest.raises(ConfigError, match="multiples of 8"):
        BackboneConfig(arch="film", conv_channels=(12,))
    with pytest.raises(ConfigError, match="action_space must be one of"):
        VLAConfig(action_space="cartesian")
    with pytest.raises(ConfigError, match="delta actions need"):
        VLAConfig(action_space="delta", action_dim=12)
    assert BackboneConfig(arch="film", image_height=64, image_width=50).tokens_per_camera == 4
