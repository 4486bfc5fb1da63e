"""A byte-level tokenizer: needs no downloaded vocabulary and handles any UTF-8 text."""

import torch

PAD_ID = 0
BOS_ID = 1
_BYTE_OFFSET = 2
VOCAB_SIZE = 256 + _BYTE_OFFSET


def encode_text(texts: list[str], max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids (B, max_len) and a padding mask (True where padded); long texts are truncated."""
    ids = torch.full((len(texts), max_len), PAD_ID, dtype=torch.long)
    for row, text in enumerate(texts):
        tokens = [BOS_ID, *(b + _BYTE_OFFSET for b in text.encode("utf-8"))][:max_len]
        ids[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
    return ids, ids == PAD_ID
