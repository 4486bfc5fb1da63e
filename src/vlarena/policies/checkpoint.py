"""Checkpoint directories: config.json, model.safetensors, norm_stats.json, metadata.json.

No pickle anywhere: weights are safetensors, everything else is JSON. Every read validates and
raises CheckpointError naming the file and the problem.
"""

import json
import os.path
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from vlarena.errors import CheckpointError, ConfigError, echo
from vlarena.policies.schema import STRICT_JSON, JsonCodec

FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
NORM_STATS_FILE = "norm_stats.json"
METADATA_FILE = "metadata.json"
# Optional, for model cards: {"license", "source", "evaluated": how, "evaluation": per-task
# summaries as `vlarena eval` writes them}.
CARD_FILE = "card.json"
CARD_FIELDS = ("trained", "license", "source", "evaluated", "evaluation")  # of a model card
MAX_JSON_BYTES = 1 << 20  # the JSON files of a checkpoint are small; refuse anything bigger

T = TypeVar("T")


@dataclass(frozen=True)
class CheckpointMeta:
    """The small metadata file: which implementation reads the checkpoint, and its identity."""

    __pydantic_config__ = STRICT_JSON

    policy_type: str  # registered policy implementation, e.g. "vla-flow"
    name: str  # model id served and shown, e.g. "vla-flow-small"
    version: str = "0.1.0"  # model version
    format_version: int = FORMAT_VERSION  # layout of this directory
    created_at: str = ""  # ISO-8601 UTC time of writing
    vlarena_version: str = ""  # package version that wrote it
    description: str = ""  # free text: data, training run, ...


META_JSON = JsonCodec(CheckpointMeta, "checkpoint metadata")


def read_section(directory: Path, filename: str, codec: JsonCodec[T]) -> T:
    """Read and validate one JSON file of a checkpoint; every problem is a CheckpointError."""
    path = directory / filename
    if not path.is_file():
        raise CheckpointError(f"checkpoint file missing: {path}")
    raw = small_file(path)
    try:
        return codec.loads(raw)
    except ConfigError as exc:
        raise CheckpointError(f"{path}: {exc}") from None


def small_file(path: Path) -> bytes:
    """A checkpoint's JSON file, read whole (CheckpointError if too large or unreadable)."""
    try:
        if path.stat().st_size > MAX_JSON_BYTES:
            raise CheckpointError(f"{path} is larger than {MAX_JSON_BYTES} bytes")
        return path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"cannot read {path}: {exc}") from None


def read_metadata(directory: Path) -> CheckpointMeta:
    """Read and check metadata.json."""
    if not os.path.isdir(directory):  # False, not OSError, for a name too long to be a path
        raise CheckpointError(f"checkpoint directory not found: {echo(str(directory))}")
    meta = read_section(directory, METADATA_FILE, META_JSON)
    if meta.format_version != FORMAT_VERSION:
        raise CheckpointError(
            f"{directory} has checkpoint format {meta.format_version}; "
            f"this vlarena reads format {FORMAT_VERSION}"
        )
    return meta


def read_card(directory: Path, meta: CheckpointMeta) -> str:
    """A checkpoint's model card (`ModelInfo.card`): its metadata's description as the training
    summary, and the fields of its card file if it has one (CheckpointError if unreadable)."""
    card: dict[str, object] = {"trained": meta.description} if meta.description else {}
    path = directory / CARD_FILE
    if path.is_file():
        try:
            extra = json.loads(small_file(path))
        except ValueError as exc:
            raise CheckpointError(f"cannot read {path}: {exc}") from None
        if not isinstance(extra, dict):
            raise CheckpointError(f"{path} must hold a JSON object")
        card |= {k: extra[k] for k in CARD_FIELDS if k in extra}
    return json.dumps(card) if card else ""


def read_weights(directory: Path) -> dict[str, torch.Tensor]:
    """Tensors of model.safetensors, on the CPU."""
    path = directory / WEIGHTS_FILE
    if not path.is_file():
        raise CheckpointError(f"checkpoint file missing: {path}")
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"cannot read weights {path}: {exc}") from None


def write_checkpoint(
    directory: Path,
    meta: CheckpointMeta,
    config_json: bytes,
    norm_stats_json: bytes,
    weights: dict[str, torch.Tensor],
) -> None:
    """Write the four files; the metadata goes last so a half-written checkpoint never loads."""
    from vlarena import __version__

    directory.mkdir(parents=True, exist_ok=True)
    (directory / METADATA_FILE).unlink(missing_ok=True)
    save_file(
        {k: v.detach().to("cpu").contiguous() for k, v in weights.items()},
        str(directory / WEIGHTS_FILE),
        metadata={"format": "pt"},
    )
    (directory / CONFIG_FILE).write_bytes(config_json)
    (directory / NORM_STATS_FILE).write_bytes(norm_stats_json)
    stamped = replace(
        meta,
        created_at=meta.created_at or datetime.now(UTC).isoformat(timespec="seconds"),
        vlarena_version=meta.vlarena_version or __version__,
    )
    (directory / METADATA_FILE).write_bytes(META_JSON.dumps(stamped))
