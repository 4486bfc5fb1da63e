"""Checkpoint directories: config.json, model.safetensors, norm_stats.json, metadata.json.

No pickle anywhere: weights are safetensors, everything else is JSON. Every read validates and
raises CheckpointError naming the file and the problem.
"""

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from pydantic import ConfigDict, TypeAdapter, ValidationError
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from vlarena.errors import CheckpointError, ConfigError, describe_validation

FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
NORM_STATS_FILE = "norm_stats.json"
METADATA_FILE = "metadata.json"


@dataclass(frozen=True)
class CheckpointMeta:
    """The small metadata file: which implementation reads the checkpoint, and its identity."""

    __pydantic_config__ = ConfigDict(extra="forbid")

    policy_type: str  # registered policy implementation, e.g. "vla-flow"
    name: str  # model id served and shown, e.g. "vla-flow-small"
    version: str = "0.1.0"  # model version
    format_version: int = FORMAT_VERSION  # layout of this directory
    created_at: str = ""  # ISO-8601 UTC time of writing
    vlarena_version: str = ""  # package version that wrote it
    description: str = ""  # free text: data, training run, ...


_META = TypeAdapter(CheckpointMeta)


def read_json(path: Path) -> Any:
    """Parse a JSON file, raising CheckpointError if it is missing or malformed."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint file missing: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"cannot read {path}: {exc}") from None


def read_metadata(directory: Path) -> CheckpointMeta:
    """Read and check metadata.json."""
    if not directory.is_dir():
        raise CheckpointError(f"checkpoint directory not found: {directory}")
    try:
        meta = _META.validate_python(read_json(directory / METADATA_FILE))
    except ValidationError as exc:
        raise CheckpointError(
            f"invalid {directory / METADATA_FILE}: {describe_validation(exc)}"
        ) from None
    if meta.format_version != FORMAT_VERSION:
        raise CheckpointError(
            f"{directory} has checkpoint format {meta.format_version}; "
            f"this vlarena reads format {FORMAT_VERSION}"
        )
    return meta


def read_section(directory: Path, filename: str, parse: Any) -> Any:
    """Read a JSON file and parse it with `parse`, turning ConfigError into CheckpointError."""
    try:
        return parse(read_json(directory / filename))
    except ConfigError as exc:
        raise CheckpointError(f"invalid {directory / filename}: {exc}") from None


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
    config: dict[str, Any],
    norm_stats: dict[str, Any],
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
    _write_json(directory / CONFIG_FILE, config)
    _write_json(directory / NORM_STATS_FILE, norm_stats)
    stamped = _META.dump_python(meta, mode="json") | {
        "created_at": meta.created_at or datetime.now(UTC).isoformat(timespec="seconds"),
        "vlarena_version": meta.vlarena_version or __version__,
    }
    _write_json(directory / METADATA_FILE, stamped)


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
