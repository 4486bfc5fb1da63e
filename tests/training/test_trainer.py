"""Training: losses fall, stages train what they say, runs resume exactly, torchrun DDP syncs."""

import json
import math
import os
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from vlarena.cli import app
from vlarena.data import DemoDataset
from vlarena.data.dataset import write_dataset
from vlarena.errors import ConfigError, UnknownNameError
from vlarena.policies import DeviceConfig, NativeVLAPolicy, load_policy
from vlarena.policies.native import NativeVLA
from vlarena.training import TrainConfig, get_recipe, train
from vlarena.training.batches import Batch
from vlarena.training.modules import TrainModule
from vlarena.training.trainer import (
    CHECKPOINT_DIR,
    KEPT_WORD_IDS,
    LOG_FILE,
    PLOT_FILE,
    STATE_FILE,
    _carry_grounding,
    _Dist,
    _Run,
)


def load_policy_model(path: Path) -> NativeVLA:
    policy = load_policy(path, DeviceConfig())
    assert isinstance(policy, NativeVLAPolicy)
    return policy.model


TINY = TrainConfig(
    preset="tiny", steps=6, batch_size=4, warmup_steps=1, log_every=2, checkpoint_every=3
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / CHECKPOINT_DIR / "model.safetensors"))


@pytest.mark.slow
@pytest.mark.parametrize("family", ["vla-flow", "vla-ar"])
def test_training_a_tiny_model_lowers_the_loss(
    family: str, demo_dataset: Path, tmp_path: Path
) -> None:
    cfg = replace(
        TINY,
        family=family,
        stage="full",
        steps=80,
        batch_size=16,
        lr=2e-3,
        log_every=10,
        warmup_steps=5,
        checkpoint_every=80,
    )
    result = train(cfg, demo_dataset, tmp_path, progress=False)
    # Cross-entropy over 32 bins starts at ln 32 and falls slower than the flow MSE.
    assert result.last_loss < (0.7 if family == "vla-flow" else 0.85) * result.first_loss
    rows = [json.loads(line) for line in (tmp_path / LOG_FILE).read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(10, 81, 10))
    assert (tmp_path / PLOT_FILE).read_bytes()[:4] == b"\x89PNG"
    policy = load_policy(result.checkpoint, DeviceConfig())
    assert policy.info.policy_type == family


@pytest.mark.slow
def test_grounding_pretraining_lowers_its_loss(demo_dataset: Path, tmp_path: Path) -> None:
    cfg = replace(
        TINY,
        stage="pretrain",
        steps=200,
        batch_size=16,
        lr=2e-3,
        log_every=20,
        checkpoint_every=200,
        warmup_steps=10,
    )
    result = train(cfg, demo_dataset, tmp_path, progress=False)
    assert result.last_loss < 0.7 * result.first_loss


@pytest.mark.slow
def test_the_shipping_pipeline_on_the_film_architecture(demo_dataset: Path, tmp_path: Path) -> None:
    """Pretrain → full (with the grounding loss) for the flow model, then the AR head on its
    frozen trunk: the shape of the `ship` and `ship-head` recipes, at test size."""
    film = replace(
        TINY,
        preset="film-tiny",
        batch_size=16,
        lr=2e-3,
        warmup_steps=5,
        log_every=10,
        checkpoint_every=60,
    )
    pretrained = train(
        replace(film, stage="pretrain", steps=30),
        demo_dataset,
        tmp_path / "pretrain",
        progress=False,
    )
    full = train(
        replace(film, stage="full", steps=60, grounding_weight=0.5),
        demo_dataset,
        tmp_path / "full",
        init=pretrained.checkpoint,
        progress=False,
    )
    # The full stage continues with the pretrained grounding head, not a fresh one.
    full_cfg = replace(film, stage="full", grounding_weight=0.5)
    module = TrainModule(load_policy_model(pretrained.checkpoint), full_cfg)
    _carry_grounding(module, pretrained.checkpoint)
    saved = torch.load(tmp_path / "pretrain" / STATE_FILE, weights_only=True)["module"]
    assert module.grounding is not None
    for name, value in module.grounding.state_dict().items():
        assert torch.equal(value, saved[f"grounding.{name}"]), name
    assert full.last_loss < 0.7 * full.first_loss
    flow = load_policy(full.checkpoint, DeviceConfig())
    assert isinstance(flow, NativeVLAPolicy)
    assert flow.config.action_space == "delta"
    assert len(flow.norm_stats.action_mean) == flow.config.chunk_size * 8  # per chunk step
    head = train(
        replace(film, family="vla-ar", stage="expert", steps=60),
        demo_dataset,
        tmp_path / "ar",
        init=full.checkpoint,
        progress=False,
    )
    assert head.last_loss < head.first_loss
    ar = load_policy(head.checkpoint, DeviceConfig())
    backbone = {k: v for k, v in _weights(tmp_path / "full").items() if k.startswith("backbone.")}
    ar_weights = _weights(tmp_path / "ar")
    assert all(torch.equal(ar_weights[k], v) for k, v in backbone.items())  # the shared trunk
    assert ar.info.policy_type == "vla-ar"
    assert "head.bin_emb.weight" not in ar_weights  # film presets decode the chunk in parallel
    with pytest.raises(ConfigError, match="LoRA adapts transformer backbones"):
        train(replace(film, stage="lora", steps=2), demo_dataset, tmp_path / "lora", progress=False)
    with pytest.raises(ConfigError, match="grounding_weight needs"):
        replace(film, stage="expert", grounding_weight=0.5)


def test_word_noise_changes_only_the_words(demo_dataset: Path, tmp_path: Path) -> None:
    film = replace(TINY, preset="film-tiny", batch_size=32)
    data = DemoDataset(demo_dataset)

    def batch(cfg: TrainConfig) -> Batch:
        with torch.random.fork_rng(devices=[]):  # _batch seeds the global RNG, as train does
            return _Run(cfg, data, tmp_path, _Dist(0, 1), "x", None)._batch(3)

    noisy_cfg = replace(film, word_noise=0.5)
    plain, noisy = batch(film), batch(noisy_cfg)
    assert torch.equal(plain.images, noisy.images)  # the same augmentation draws
    assert torch.equal(plain.actions, noisy.actions)
    changed = plain.text_ids != noisy.text_ids
    assert changed.any()
    assert not torch.isin(plain.text_ids[changed], KEPT_WORD_IDS).any()  # colours, sides kept
    # Noisy runs still resume exactly: the noise is a function of (seed, rank, step).
    straight = train(noisy_cfg, demo_dataset, tmp_path / "a", progress=False)
    train(noisy_cfg, demo_dataset, tmp_path / "b", progress=False, stop_at=3)
    train(noisy_cfg, demo_dataset, tmp_path / "b", resume=True, progress=False)
    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert all(torch.equal(a[k], b[k]) for k in a)
    unnoised = train(film, demo_dataset, tmp_path / "c", progress=False)
    assert straight.replica_checksums != unnoised.replica_checksums  # the noise reaches training
    with pytest.raises(ConfigError, match="needs a film backbone"):
        replace(TINY, word_noise=0.1)
    with pytest.raises(ConfigError, match="needs a stage that reads the text"):
        replace(film, stage="expert", word_noise=0.1)
    with pytest.raises(ConfigError, match=r"word_noise must be in \[0, 1\)"):
        replace(film, word_noise=1.0)


def test_grounding_can_learn_where_the_cube_goes(demo_dataset: Path, tmp_path: Path) -> None:
    film = replace(TINY, preset="film-tiny", stage="pretrain")
    placed = replace(film, grounding_place=True)
    data = DemoDataset(demo_dataset)
    targets = {}
    for cfg in (film, placed):
        with torch.random.fork_rng(devices=[]):
            run = _Run(cfg, data, tmp_path / "probe", _Dist(0, 1), "x", None)
            batch = run._batch(0)
        targets[cfg] = batch.targets
        module = TrainModule(run.model, cfg)
        assert module.grounding is not None
        tokens, padding = run.model.features(batch.images, batch.text_ids, batch.text_pad)
        assert module.grounding(tokens, padding).shape == batch.targets.shape
    # The same frames: the first 8 columns as before, then the place targets, standardized.
    assert targets[film].shape == (film.batch_size, 8)
    torch.testing.assert_close(targets[placed][:, :8], targets[film])
    place = torch.as_tensor(data.target[np.asarray(batch.anchors), 8:], dtype=torch.float64)
    standardized = (place - place.new_tensor(data.target[:, 8:].mean(0))) / place.new_tensor(
        data.target[:, 8:].astype(np.float64).std(0)
    )
    torch.testing.assert_close(targets[placed][:, 8:], standardized.float(), rtol=0, atol=1e-4)
    # Pretrained on 8 targets, then the full stage on 11: the head carries over but its output.
    first = train(film, demo_dataset, tmp_path / "pre", progress=False)
    full = replace(placed, stage="full", grounding_weight=0.5)
    module = TrainModule(load_policy_model(first.checkpoint), full)
    _carry_grounding(module, first.checkpoint)
    saved = torch.load(tmp_path / "pre" / STATE_FILE, weights_only=True)["module"]
    assert module.grounding is not None
    own = module.grounding.state_dict()
    assert torch.equal(own["query"], saved["grounding.query"])
    assert own["out.2.weight"].shape == (11, saved["grounding.out.2.weight"].shape[1])
    result = train(full, demo_dataset, tmp_path / "full", init=first.checkpoint, progress=False)
    assert math.isfinite(result.last_loss)
    # A dataset recorded before the place targets: a clear error, not a shape crash.
    old = tmp_path / "old"
    records = [replace(r, targets=r.targets[:, :8]) for r in data.records()]
    write_dataset(old, records, data.meta.image_size, data.meta.cameras, {}, data.meta.dropped)
    train(film, old, tmp_path / "old-run", progress=False)  # the first 8 are all it needs
    with pytest.raises(ConfigError, match="records only 8"):
        train(placed, old, tmp_path / "old-placed", progress=False)
    with pytest.raises(ConfigError, match="grounding_place needs grounding"):
        replace(TINY, grounding_place=True)
    with pytest.raises(ConfigError, match="different layouts"):
        write_dataset(tmp_path / "mixed", [*data.records(), *records], 32, ("front",), {}, {})
    assert not (tmp_path / "mixed").exists()


def test_stages_train_what_they_say(demo_dataset: Path, tmp_path: Path) -> None:
    runs = {}
    init = None
    for cfg in get_recipe("smoke", "vla-flow"):
        runs[cfg.stage] = train(
            cfg, demo_dataset, tmp_path / cfg.stage, init=init, progress=False
        ).checkpoint
        init = runs[cfg.stage]
    pre, expert, lora = (
        load_file(str(runs[s] / "model.safetensors")) for s in ("pretrain", "expert", "lora")
    )
    backbone = [k for k in pre if k.startswith("backbone.")]
    head = [k for k in pre if k.startswith("head.")]

    # peft merges and unmerges MHA adapters around each forward: frozen weights may drift by
    # float rounding (~1e-7), far below what training moves.
    def changed(
        a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], keys: list[str]
    ) -> set[str]:
        return {k for k in keys if not torch.allclose(a[k], b[k], rtol=0, atol=1e-5)}

    # Stage 1: the backbone is frozen, the action expert learns.
    assert not changed(pre, expert, backbone)
    assert changed(pre, expert, head)
    # Stage 2: LoRA moves exactly the adapted encoder weights (merged back into the plain
    # layout), never the patch stem or embeddings; the expert keeps learning.
    moved = changed(expert, lora, backbone)
    assert moved
    assert all(".encoder.layers." in k for k in moved)
    assert any("self_attn.in_proj_weight" in k for k in moved)
    assert any("linear1.weight" in k for k in moved)
    assert set(lora) == set(pre)  # merged: loads as a plain model
    assert changed(expert, lora, head)


def test_resume_continues_exactly_where_the_run_stopped(demo_dataset: Path, tmp_path: Path) -> None:
    straight = train(TINY, demo_dataset, tmp_path / "a", progress=False)
    interrupted = train(TINY, demo_dataset, tmp_path / "b", progress=False, stop_at=4)
    assert interrupted.steps == 4
    resumed = train(TINY, demo_dataset, tmp_path / "b", resume=True, progress=False)
    assert resumed.steps == straight.steps == 6
    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert straight.replica_checksums == resumed.replica_checksums


def test_resume_refuses_another_config(demo_dataset: Path, tmp_path: Path) -> None:
    train(replace(TINY, steps=3), demo_dataset, tmp_path, progress=False)
    with pytest.raises(ConfigError, match="another config"):
        train(replace(TINY, lr=1e-2), demo_dataset, tmp_path, resume=True, progress=False)


def test_bad_configs_fail_clearly(demo_dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(UnknownNameError, match="valid: expert, full, lora, pretrain"):
        TrainConfig(stage="magic")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="steps must be ≥ 1"):
        TrainConfig(steps=0)
    with pytest.raises(UnknownNameError, match="native policy type"):
        train(replace(TINY, family="nope"), demo_dataset, tmp_path, progress=False)
    with pytest.raises(ConfigError, match="the dataset has 32x32"):
        train(replace(TINY, preset="small"), demo_dataset, tmp_path, progress=False)
    other = tmp_path / "other"
    train(TINY, demo_dataset, other, progress=False)
    weights = _weights(other)
    reshaped_backbone = {**weights, "backbone.patch.weight": torch.zeros(1)}
    foreign_head = {**weights, "head.bin_emb.weight": torch.zeros(4, 4)}  # same family, new key
    for changed in (reshaped_backbone, foreign_head):
        save_file(changed, str(other / CHECKPOINT_DIR / "model.safetensors"))
        with pytest.raises(ConfigError, match="does not fit this model"):
            train(TINY, demo_dataset, tmp_path / "x", init=other / CHECKPOINT_DIR, progress=False)


@pytest.mark.slow
def test_torchrun_ddp_with_two_processes_keeps_replicas_in_sync(
    demo_dataset: Path, tmp_path: Path
) -> None:
    torchrun = Path(sys.executable).parent / "torchrun"
    cmd = [
        str(torchrun),
        "--nproc_per_node=2",
        f"--master_port={_free_port()}",
        "-m",
        "vlarena",
        "train",
        str(demo_dataset),
        str(tmp_path),
        "--preset",
        "tiny",
        "--steps",
        "4",
        "--batch-size",
        "4",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["world_size"] == 2
    first, second = result["replica_checksums"]
    assert first == second


def test_cli_runs_a_recipe(demo_dataset: Path, tmp_path: Path) -> None:
    out = CliRunner().invoke(
        app, ["train", str(demo_dataset), str(tmp_path), "--recipe", "smoke", "--family", "vla-ar"]
    )
    assert out.exit_code == 0, out.output
    for stage in ("pretrain", "expert", "lora"):
        assert (tmp_path / stage / CHECKPOINT_DIR / "metadata.json").exists()
    assert load_policy(tmp_path / "lora" / CHECKPOINT_DIR, DeviceConfig()).info.policy_type == (
        "vla-ar"
    )
    no_init = CliRunner().invoke(
        app,
        ["train", str(demo_dataset), str(tmp_path), "--recipe", "smoke", "--from-stage", "lora"],
    )
    assert no_init.exit_code == 2
    assert "--from-stage needs --recipe and --init" in no_init.output
    noisy = [
        *("train", str(demo_dataset), str(tmp_path / "noisy"), "--steps", "2", "--batch-size"),
        *("4", "--word-noise", "0.2", "--preset"),
    ]
    assert CliRunner().invoke(app, [*noisy, "film-tiny"]).exit_code == 0
    bytes_preset = CliRunner().invoke(app, [*noisy, "tiny"])
    assert bytes_preset.exit_code == 2
    assert "word_noise needs a film backbone" in bytes_preset.output
    bad = CliRunner().invoke(app, ["train", str(demo_dataset), str(tmp_path), "--recipe", "x"])
    assert bad.exit_code == 2
    listed = "valid: ship, ship-dagger, ship-dagger-ensembled, ship-head, ship-head-dagger, smoke"
    assert listed in " ".join(bad.output.split())  # the console wraps long lines
