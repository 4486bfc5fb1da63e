"""Network-level checks: tokenizer, KV-cached decoding, flow sampling."""

from dataclasses import replace

import pytest
import torch

from vlarena.policies import PRESETS
from vlarena.policies.networks import FlowExpert, TokenDecoder
from vlarena.policies.networks.tokenizer import BOS_ID, PAD_ID, VOCAB_SIZE, encode_text

CFG = PRESETS["tiny"]


def test_byte_tokenizer_pads_truncates_and_handles_unicode() -> None:
    ids, pad = encode_text(["ab", "빨간 큐브", "x" * 100], max_len=8)
    assert ids.shape == (3, 8)
    assert ids[0, :3].tolist() == [BOS_ID, ord("a") + 2, ord("b") + 2]
    assert pad[0].tolist() == [False] * 3 + [True] * 5
    assert not pad[2].any()  # truncated to max_len, nothing padded
    assert int(ids.max()) < VOCAB_SIZE
    assert (ids[pad] == PAD_ID).all()


def _conditioning(head: FlowExpert | TokenDecoder, batch: int = 2) -> object:
    torch.manual_seed(0)
    features = torch.randn(batch, 12, CFG.backbone.d_model)
    padding = torch.zeros(batch, 12, dtype=torch.bool)
    padding[0, 8:] = True
    return head.condition(features, padding, torch.randn(batch, 2 * CFG.state_dim), None)


@torch.inference_mode()
def test_kv_cached_decoding_matches_teacher_forcing() -> None:
    torch.manual_seed(0)
    head = TokenDecoder(CFG).eval()
    cond = _conditioning(head)
    noise = torch.zeros(2, CFG.chunk_size, CFG.action_dim)
    actions, confidence = head.sample(cond, noise)  # type: ignore[arg-type]
    bins = head.to_bins(actions)
    assert bins.shape == (2, CFG.chunk_size, CFG.action_dim)
    probs = head(cond, bins[:, :-1]).softmax(-1)
    medians = (probs.cumsum(-1) <= 0.5).sum(-1)  # the first bin whose CDF passes one half
    assert torch.equal(medians, bins)
    probs = probs.gather(3, bins[..., None])[..., 0].flatten(1).mean(1)
    torch.testing.assert_close(probs, confidence, atol=1e-5, rtol=1e-4)


@torch.inference_mode()
def test_sampling_follows_each_steps_noise_and_each_step_sees_the_ones_before() -> None:
    torch.manual_seed(0)
    head = TokenDecoder(replace(CFG, expert=replace(CFG.expert, temperature=1.0))).eval()
    cond = _conditioning(head)
    noise = torch.rand(2, CFG.chunk_size, CFG.action_dim)
    actions, _ = head.sample(cond, noise)  # type: ignore[arg-type]
    bins = head.to_bins(actions)
    cdf = head(cond, bins[:, :-1]).softmax(-1).cumsum(-1)
    # Every step and dimension took the inverse-CDF bin of its own draw.
    assert torch.equal((cdf <= noise[..., None] * cdf[..., -1:]).sum(-1), bins)
    # Changing step 0's bins changes what step 1 is predicted to be (causal, not parallel).
    other = bins.clone()
    other[:, 0] = (other[:, 0] + CFG.expert.n_bins // 2) % CFG.expert.n_bins
    logits, moved = head(cond, bins[:, :1]), head(cond, other[:, :1])
    torch.testing.assert_close(logits[:, 0], moved[:, 0])
    assert not torch.allclose(logits[:, 1], moved[:, 1])


@pytest.mark.parametrize("temperature", [0.0, 1.0])
@torch.inference_mode()
def test_parallel_decoding_takes_every_step_from_one_pass(temperature: float) -> None:
    torch.manual_seed(0)
    expert = replace(CFG.expert, parallel_decoding=True, temperature=temperature)
    head = TokenDecoder(replace(CFG, expert=expert)).eval()
    assert not hasattr(head, "bin_emb")  # no step reads a chosen bin
    cond = _conditioning(head)
    noise = torch.rand(2, CFG.chunk_size, CFG.action_dim)
    actions, confidence = head.sample(cond, noise)  # type: ignore[arg-type]
    bins = head.to_bins(actions)
    logits = head(cond, bins[:, :-1])  # what training scores: the same pass
    cdf = logits.softmax(-1).cumsum(-1)
    u = noise[..., None] if temperature else 0.5
    assert torch.equal((cdf <= u * cdf[..., -1:]).sum(-1), bins)  # each step: its own draw
    probs = (logits / (temperature or 1.0)).softmax(-1).gather(3, bins[..., None])[..., 0]
    torch.testing.assert_close(probs.flatten(1).mean(1), confidence, atol=1e-5, rtol=1e-4)
    # The steps attend to one another both ways: the last step's position reaches the first.
    head.step_pos[:, -1] += torch.randn(CFG.expert.d_model)
    assert not torch.allclose(head(cond, bins[:, :-1])[:, 0], logits[:, 0])


@torch.inference_mode()
def test_padded_features_are_ignored() -> None:
    torch.manual_seed(0)
    head = FlowExpert(CFG).eval()
    features = torch.randn(1, 12, CFG.backbone.d_model)
    padding = torch.zeros(1, 12, dtype=torch.bool)
    padding[0, 8:] = True
    state = torch.randn(1, 2 * CFG.state_dim)
    noise = torch.randn(1, CFG.chunk_size, CFG.action_dim)
    a, _ = head.sample(head.condition(features, padding, state, None), noise)
    features[0, 8:] = 100.0
    b, _ = head.sample(head.condition(features, padding, state, None), noise)
    torch.testing.assert_close(a, b)
