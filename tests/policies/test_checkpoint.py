"""Checkpoint loading fails clearly on every kind of broken directory."""

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from vlarena import CheckpointError, UnknownNameError
from vlarena.policies import (
    PRESETS,
    AutoregressiveVLAPolicy,
    DeviceConfig,
    FlowVLAPolicy,
    load_policy,
)
from vlarena.policies.checkpoint import FORMAT_VERSION


@pytest.fixture
def ckpt(tmp_path: Path) -> Path:
    path = tmp_path / "ckpt"
    FlowVLAPolicy.create(PRESETS["tiny"], "flow-tiny").save(path)
    return path


def edit_json(path: Path, change: Callable[[dict[str, object]], None]) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_metadata_is_complete(ckpt: Path) -> None:
    meta = json.loads((ckpt / "metadata.json").read_text())
    assert meta["policy_type"] == "vla-flow"
    assert meta["name"] == "flow-tiny"
    assert meta["format_version"] == FORMAT_VERSION
    assert meta["created_at"]
    assert meta["vlarena_version"]


def test_weights_are_safetensors_not_pickle(ckpt: Path) -> None:
    raw = (ckpt / "model.safetensors").read_bytes()
    header_len = int.from_bytes(raw[:8], "little")
    assert json.loads(raw[8 : 8 + header_len])["__metadata__"] == {"format": "pt"}


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="directory not found"):
        load_policy(tmp_path / "nope")


@pytest.mark.parametrize(
    "filename", ["metadata.json", "config.json", "norm_stats.json", "model.safetensors"]
)
def test_missing_file(ckpt: Path, filename: str) -> None:
    (ckpt / filename).unlink()
    with pytest.raises(CheckpointError, match=f"missing: .*{filename}"):
        load_policy(ckpt)


def test_malformed_json(ckpt: Path) -> None:
    (ckpt / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"config\.json: invalid VLA config: .*Invalid JSON"):
        load_policy(ckpt)


def test_format_version_mismatch(ckpt: Path) -> None:
    edit_json(ckpt / "metadata.json", lambda m: m.update(format_version=99))
    with pytest.raises(CheckpointError, match="format 99"):
        load_policy(ckpt)


def test_unknown_policy_type_lists_valid(ckpt: Path) -> None:
    edit_json(ckpt / "metadata.json", lambda m: m.update(policy_type="gr00t"))
    with pytest.raises(UnknownNameError, match=r"unknown policy type 'gr00t'; valid: .*vla-flow"):
        load_policy(ckpt)


def test_wrong_class_for_checkpoint(ckpt: Path) -> None:
    with pytest.raises(CheckpointError, match="holds a 'vla-flow' checkpoint, not 'vla-ar'"):
        AutoregressiveVLAPolicy.load(ckpt, DeviceConfig())


def test_invalid_config_value(ckpt: Path) -> None:
    edit_json(ckpt / "config.json", lambda c: c["backbone"].update(n_heads=3))  # type: ignore[attr-defined]
    with pytest.raises(CheckpointError, match=r"config\.json.*not divisible by n_heads 3"):
        load_policy(ckpt)


def test_unknown_config_key(ckpt: Path) -> None:
    edit_json(ckpt / "config.json", lambda c: c.update(surprise=1))
    with pytest.raises(CheckpointError, match="surprise"):
        load_policy(ckpt)


def test_norm_stats_do_not_match_config(ckpt: Path) -> None:
    edit_json(ckpt / "norm_stats.json", lambda n: n.update(state_mean=[0.0], state_std=[1.0]))
    with pytest.raises(CheckpointError, match="normalization stats sizes"):
        load_policy(ckpt)


def test_weights_do_not_match_config(ckpt: Path) -> None:
    edit_json(ckpt / "config.json", lambda c: c.update(chunk_size=6))
    with pytest.raises(CheckpointError, match="weights do not match the config"):
        load_policy(ckpt)


def test_missing_tensor(ckpt: Path) -> None:
    weights = load_file(str(ckpt / "model.safetensors"))
    weights.pop(next(iter(weights)))
    save_file(weights, str(ckpt / "model.safetensors"))
    with pytest.raises(CheckpointError, match="Missing key"):
        load_policy(ckpt)


def test_corrupt_weights(ckpt: Path) -> None:
    (ckpt / "model.safetensors").write_bytes(b"\x00" * 16)
    with pytest.raises(CheckpointError, match="cannot read weights"):
        load_policy(ckpt)


@pytest.mark.parametrize(
    ("filename", "text", "message"),
    [
        ("config.json", '{"chunk_size": "8"}', "chunk_size: Input should be a valid integer"),
        ("config.json", '{"chunk_size": true}', "chunk_size: Input should be a valid integer"),
        ("config.json", '{"chunk_size": 1' + "0" * 5000 + "}", "number out of range"),
        ("config.json", "[" * 100_000 + "]" * 100_000, "recursion limit"),
        ("config.json", '{"expert": {"d_model": 1099511627776}}', "d_model must be in"),
        ("config.json", '{"state_dim": 100}', "state_dim must be in 1..64"),
        ("config.json", '{"backbone": {"camera_names": [""]}}', "non-empty strings"),
        ("config.json", '{"expert": {"temperature": 1e999}}', "temperature"),
        ("metadata.json", '{"policy_type": 1, "name": "x"}', "policy_type"),
        ("norm_stats.json", '{"state_mean": [NaN]}', "state_mean"),
    ],
)
def test_hostile_json_gives_checkpoint_errors(
    ckpt: Path, filename: str, text: str, message: str
) -> None:
    (ckpt / filename).write_text(text)
    with pytest.raises(CheckpointError, match=message):
        load_policy(ckpt)


def test_nan_norm_stats_are_refused(ckpt: Path) -> None:
    edit_json(ckpt / "norm_stats.json", lambda n: n.update(action_mean=[1e308 * 10] * 8))
    with pytest.raises(CheckpointError, match=r"norm_stats\.json"):
        load_policy(ckpt)


def test_oversized_json_is_refused(ckpt: Path) -> None:
    (ckpt / "config.json").write_text(" " * (2 << 20) + "{}")
    with pytest.raises(CheckpointError, match="larger than"):
        load_policy(ckpt)
