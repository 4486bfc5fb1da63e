"""Network-level checks: tokenizer, KV-cached decoding, flow sampling."""

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
    actions, confidence = head.sample(cond, torch.zeros(2, head.num_tokens))  # type: ignore[arg-type]
    tokens = head.to_bins(actions)
    bos = torch.full((2, 1), head.bos)
    logits = head(cond, torch.cat([bos, tokens[:, :-1]], dim=1))
    assert torch.equal(logits.argmax(-1), tokens)
    probs = logits.softmax(-1).gather(2, tokens[..., None])[..., 0].mean(1)
    torch.testing.assert_close(probs, confidence, atol=1e-5, rtol=1e-4)


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
