"""Tokenizers that need no downloaded vocabulary: UTF-8 bytes, or hashed lowercase words."""

import re
import zlib

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


WORD_BUCKETS = 4096  # word ids are hashed: any word has one, no vocabulary file to ship (a test
# checks that every word of the task wordings and colours gets a bucket of its own)
VOCAB_WORDS = WORD_BUCKETS + _BYTE_OFFSET
_WORD = re.compile(r"[a-z0-9]+")


def encode_words(texts: list[str], max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Lowercase word ids (B, max_len), BOS first, and a padding mask (True where padded).

    Case and punctuation are dropped, so "Lift the RED cube!" reads as "lift the red cube".
    """
    ids = torch.full((len(texts), max_len), PAD_ID, dtype=torch.long)
    for row, text in enumerate(texts):
        tokens = [BOS_ID, *(word_id(w) for w in _WORD.findall(text.lower()))]
        ids[row, : min(max_len, len(tokens))] = torch.tensor(tokens[:max_len], dtype=torch.long)
    return ids, ids == PAD_ID


def word_id(word: str) -> int:
    """The id of one lowercase word."""
    return _BYTE_OFFSET + zlib.crc32(word.encode()) % WORD_BUCKETS


def replace_words(
    ids: torch.Tensor, rate: float, kept: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """Word ids (B, L) with each word (not BOS or padding, not one of the `kept` ids) replaced by
    a random word id, any of them, with chance `rate`: training noise that keeps a model from
    leaning on any one wording."""
    words = (ids >= _BYTE_OFFSET) & ~torch.isin(ids, kept)
    hit = words & (torch.rand(ids.shape, generator=generator) < rate)
    noise = torch.randint(_BYTE_OFFSET, VOCAB_WORDS, ids.shape, generator=generator)
    return torch.where(hit, noise, ids)


def encode_instructions(
    arch: str, texts: list[str], max_len: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The token ids a backbone architecture reads: words (film) or bytes (transformer)."""
    return (encode_words if arch == "film" else encode_text)(texts, max_len)
