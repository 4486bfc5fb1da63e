"""Recovery data: a real policy drives in MuJoCo, the expert takes over, the dataset grows."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from vlarena.cli import app
from vlarena.data import DemoDataset
from vlarena.data.dataset import write_dataset
from vlarena.errors import ConfigError
from vlarena.evaluation import make_controller
from vlarena.policies import DeviceConfig, NativeVLAPolicy, load_policy
from vlarena.sim import run_episode
from vlarena.sim.world import HOME_QPOS, shared_world
from vlarena.training import TrainConfig, train
from vlarena.training.dagger import DaggerConfig, collect

RANDOM = "vla-flow:tiny"  # random weights: it fails every task, so the expert has work to do


@pytest.fixture(scope="module")
def aggregated(demo_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dagger") / "aggregated"
    cfg = DaggerConfig(model=RANDOM, episodes=3, tasks=("lift", "stack"), takeovers=2, workers=0)
    report = collect(cfg, demo_dataset, out)
    assert report.policy_success == {"lift": (0, 2), "stack": (0, 1)}
    assert report.episodes + report.failed_takeovers == 6
    assert report.episodes >= 3
    return out


def test_recovery_episodes_follow_the_base_demonstrations(
    demo_dataset: Path, aggregated: Path
) -> None:
    base, data = DemoDataset(demo_dataset), DemoDataset(aggregated)
    n = len(base.meta.episodes)
    assert data.meta.episodes[:n] == base.meta.episodes
    np.testing.assert_array_equal(data.action[: len(base)], base.action)
    np.testing.assert_array_equal(data.images["wrist"][: len(base)], base.images["wrist"])
    recovered = data.meta.episodes[n:]
    assert recovered
    assert {e.task for e in recovered} <= {"lift", "stack"}
    dagger = data.meta.datagen["dagger"]
    assert isinstance(dagger, list)
    assert [(r["model"], r["takeovers"]) for r in dagger if isinstance(r, dict)] == [(RANDOM, 2)]
    # Each starts exactly where the policy had taken the arm after `takeover` steps of its own
    # episode (the same seed, so the same start and the same noise).
    controller = make_controller(RANDOM)
    for e in recovered:
        world = shared_world(e.scene_id)
        run_episode(world, controller, e.instruction, e.seed, max_steps=e.takeover, horizon=4)
        state = np.concatenate([world.qpos, world.qvel])
        np.testing.assert_allclose(data.state[e.start], state, atol=1e-5)
        assert not np.allclose(state[:7], HOME_QPOS[:7], atol=1e-2)


def test_an_ensembled_round_takes_over_where_the_ensembled_policy_went(
    demo_dataset: Path, tmp_path: Path
) -> None:
    cfg = DaggerConfig(
        model=RANDOM, episodes=1, tasks=("lift",), takeovers=2, horizon=1, ensemble=True, workers=0
    )
    collect(cfg, demo_dataset, tmp_path / "out")
    data, n = DemoDataset(tmp_path / "out"), len(DemoDataset(demo_dataset).meta.episodes)
    assert data.meta.episodes[n:]
    controller, compared = make_controller(RANDOM), 0
    for e in data.meta.episodes[n:]:
        reached = {}
        for ensemble in (True, False):
            world = shared_world(e.scene_id)
            run_episode(
                world, controller, e.instruction, e.seed, e.takeover, horizon=1, ensemble=ensemble
            )
            reached[ensemble] = np.concatenate([world.qpos, world.qvel])
        np.testing.assert_allclose(data.state[e.start], reached[True], atol=1e-5)
        if e.takeover >= 2:  # from step 2 on, the newest chunk alone would have gone elsewhere
            assert not np.allclose(reached[True], reached[False], atol=1e-5)
            compared += 1
    assert compared


def test_a_run_from_a_checkpoint_keeps_its_normalization(
    demo_dataset: Path, aggregated: Path, tmp_path: Path
) -> None:
    """Fine-tuning on the aggregated data continues in the units the weights were trained in."""
    cfg = TrainConfig(preset="tiny", steps=4, batch_size=4, warmup_steps=1, checkpoint_every=4)
    first = train(cfg, demo_dataset, tmp_path / "bc", progress=False)
    tuned = train(cfg, aggregated, tmp_path / "dagger", init=first.checkpoint, progress=False)
    fresh = train(replace(cfg, seed=1), aggregated, tmp_path / "fresh", progress=False)

    def stats(path: Path) -> tuple[float, ...]:
        policy = load_policy(path, DeviceConfig())
        assert isinstance(policy, NativeVLAPolicy)
        return policy.norm_stats.action_std

    assert stats(tuned.checkpoint) == stats(first.checkpoint)
    assert stats(fresh.checkpoint) != stats(first.checkpoint)  # the recovery data differ
    # A new head of another family on the trunk fits its own; a resumed run keeps its own.
    head = replace(cfg, family="vla-ar", stage="expert")
    ar = train(head, aggregated, tmp_path / "ar", init=first.checkpoint, progress=False)
    assert stats(ar.checkpoint) == stats(fresh.checkpoint)
    more, where = replace(cfg, steps=6, log_every=2), tmp_path / "resumed"
    train(more, demo_dataset, where, init=tuned.checkpoint, progress=False, stop_at=4)
    resumed = train(more, demo_dataset, where, resume=True, progress=False)
    assert stats(resumed.checkpoint) == stats(first.checkpoint)


def test_a_base_written_before_the_place_targets_keeps_its_layout(
    demo_dataset: Path, tmp_path: Path
) -> None:
    base = DemoDataset(demo_dataset)
    old = tmp_path / "old"
    records = [replace(r, targets=r.targets[:, :8]) for r in base.records()]
    write_dataset(old, records, base.meta.image_size, base.meta.cameras, {}, base.meta.dropped)
    cfg = DaggerConfig(model=RANDOM, episodes=1, tasks=("lift",), takeovers=2, workers=0)
    collect(cfg, old, tmp_path / "out")
    data = DemoDataset(tmp_path / "out")
    assert len(data.meta.episodes) > len(base.meta.episodes)
    assert data.target.shape == (len(data), 8)
    np.testing.assert_array_equal(data.target[: len(base)], base.target[:, :8])


def test_cli_collects_a_round_and_reports_how_the_policy_did(
    demo_dataset: Path, tmp_path: Path
) -> None:
    args = ["dagger", str(demo_dataset), str(tmp_path / "out"), "--model", RANDOM]
    result = CliRunner().invoke(
        app, [*args, "--episodes", "1", "--tasks", "lift", "--workers", "0"]
    )
    assert result.exit_code == 0, result.output
    assert "policy success: lift 0/1" in result.output
    assert len(DemoDataset(tmp_path / "out").meta.episodes) > len(
        DemoDataset(demo_dataset).meta.episodes
    )
    bad = CliRunner().invoke(app, [*args[:3], "--model", "no-such-model"])
    assert bad.exit_code == 2
    assert "error:" in bad.output
    assert "Traceback" not in bad.output


def test_bad_rounds_fail_clearly(demo_dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="exists"):
        collect(DaggerConfig(model=RANDOM, workers=0), demo_dataset, demo_dataset)
    with pytest.raises(ConfigError, match="same start states again"):
        collect(
            DaggerConfig(model=RANDOM, seed=0, episodes=1, workers=0),
            demo_dataset,
            tmp_path / "out",
        )
    with pytest.raises(ConfigError, match="unknown tasks"):
        DaggerConfig(model=RANDOM, tasks=("juggle",))
    with pytest.raises(ConfigError, match="below 1,000,000"):
        DaggerConfig(model=RANDOM, seed=999_999, episodes=2)
