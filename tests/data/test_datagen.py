"""Datagen writes valid episodes; the dataset format reads back what was written."""

import json
import re
from pathlib import Path

import numpy as np
import pytest

from vlarena.data import TASK_NAMES, TASK_TEMPLATES, DatagenConfig, DemoDataset, generate
from vlarena.data.paraphrases import HELD_OUT_TEMPLATES, draw_instruction, fill, task_templates
from vlarena.errors import ConfigError, UnknownNameError
from vlarena.sim.tasks import SuccessChecker, parse_instruction
from vlarena.sim.world import FrankaWorld


@pytest.mark.parametrize(("scene", "task", "templates"), TASK_TEMPLATES)
def test_every_paraphrase_parses_to_its_task(
    scene: str, task: str, templates: tuple[str, ...]
) -> None:
    kind, _, side = task.partition("_")
    if task == "next_to":
        kind, side = "next_to", ""
    for template in templates:
        parsed = parse_instruction(template.format(a="red", b="blue"))
        assert parsed.kind == kind, template
        assert parsed.color == "red"
        assert parsed.other == ("blue" if kind in ("stack", "next_to") else None)
        assert parsed.side == (side or None)


def test_dataset_holds_one_valid_episode_per_task(demo_dataset: Path) -> None:
    data = DemoDataset(demo_dataset)
    episodes = data.meta.episodes
    assert [e.task for e in episodes] == list(TASK_NAMES)
    assert data.meta.frames == sum(e.length for e in episodes) == len(data.action)
    assert data.images["front"].shape == (len(data), 32, 32, 3)
    assert data.images["wrist"].dtype == np.uint8
    assert data.state.shape == (len(data), 18)
    assert data.action.shape == (len(data), 8)
    assert [int(data.episode[e.start]) for e in episodes] == list(range(len(episodes)))
    assert np.isfinite(data.state).all()
    assert np.isfinite(data.action).all()
    assert data.images["front"][0].std() > 5  # a rendered scene, not a blank frame
    stats = data.norm_stats
    assert np.allclose(stats.action_mean, np.asarray(data.action).mean(0), atol=1e-5)


def test_grounding_targets_locate_the_cube_the_grip_and_the_place(demo_dataset: Path) -> None:
    """Each frame's targets: the named cube, its yaw, the grip, then where the task places the
    cube (the other cube, the bin, or the named cube itself when nothing is placed)."""
    data = DemoDataset(demo_dataset)
    assert data.target.shape == (len(data), 11)
    for ep in data.meta.episodes:
        world = FrankaWorld(ep.scene_id)
        world.reset(ep.seed)
        task = parse_instruction(ep.instruction)
        assert task.color is not None
        target = data.target[ep.start]
        np.testing.assert_allclose(target[:3], world.cube(task.color).position, atol=1e-6)
        np.testing.assert_allclose(target[5:8], world.grip_position, atol=1e-6)
        if ep.task in ("stack", "next_to"):
            assert task.other is not None
            place = world.cube(task.other).position
        elif ep.task == "bin":
            place = world.data.body("bin").xpos
        else:
            place = world.cube(task.color).position
        np.testing.assert_allclose(target[8:], place, atol=1e-6)
        world.close()


def test_recorded_actions_replay_to_success(demo_dataset: Path) -> None:
    """The episodes are real: their actions, replayed open loop from the seed, solve the task."""
    data = DemoDataset(demo_dataset)
    for ep in data.meta.episodes:
        world = FrankaWorld(ep.scene_id)
        world.reset(ep.seed)
        first = np.concatenate([world.qpos, world.qvel]).astype(np.float32)
        assert np.allclose(first, data.state[ep.start])
        checker = SuccessChecker(parse_instruction(ep.instruction))
        checker.begin(world)
        for action in data.action[ep.start : ep.start + ep.length]:
            world.step(action.astype(np.float64))
        assert checker(world), ep.instruction
        world.close()


def test_failed_expert_episodes_are_dropped_and_counted(tmp_path: Path) -> None:
    # 15 steps are enough to touch a cube (~9) but not to lift one (~21).
    cfg = DatagenConfig(episodes=3, tasks=("touch", "lift"), image_size=32, max_steps=15, workers=0)
    report = generate(cfg, tmp_path / "d")
    assert report.episodes == 3
    assert report.dropped == {"touch": 0, "lift": 2}
    meta = json.loads((tmp_path / "d" / "meta.json").read_text())
    assert meta["dropped"] == {"touch": 0, "lift": 2}
    assert {e["task"] for e in meta["episodes"]} == {"touch"}


def test_datagen_refuses_a_task_the_expert_cannot_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="failed more often"):
        generate(
            DatagenConfig(episodes=1, tasks=("lift",), image_size=32, max_steps=2, workers=0),
            tmp_path / "d",
        )


def test_datagen_workers_give_the_same_dataset(demo_dataset: Path, tmp_path: Path) -> None:
    cfg = DatagenConfig(episodes=2, tasks=TASK_NAMES[:2], image_size=32, workers=2)
    generate(cfg, tmp_path / "d")
    parallel, serial = DemoDataset(tmp_path / "d"), DemoDataset(demo_dataset)
    n = parallel.meta.frames
    assert np.array_equal(parallel.action, serial.action[:n])
    assert np.array_equal(parallel.images["front"], serial.images["front"][:n])


def test_config_and_format_errors(tmp_path: Path, demo_dataset: Path) -> None:
    with pytest.raises(ConfigError, match="unknown tasks"):
        DatagenConfig(tasks=("juggle",))
    with pytest.raises(ConfigError, match="is not a dataset"):
        DemoDataset(tmp_path)
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in demo_dataset.iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    np.save(broken / "state.npy", np.zeros((3, 18), np.float32))
    with pytest.raises(ConfigError, match=r"state\.npy has 3 rows"):
        DemoDataset(broken)


def test_action_chunks_repeat_the_last_action_past_the_episode_end(demo_dataset: Path) -> None:
    data = DemoDataset(demo_dataset)
    ep = data.meta.episodes[0]
    last = ep.start + ep.length - 1
    chunks = data.action_chunks(np.array([last - 1, ep.start]), 4)
    assert np.array_equal(chunks[0, 0], data.action[last - 1])
    assert all(np.array_equal(chunks[0, i], data.action[last]) for i in (1, 2, 3))
    assert np.array_equal(chunks[1], data.action[ep.start : ep.start + 4])


def _words(text: str) -> tuple[str, ...]:
    return tuple(re.findall(r"[a-z]+", text.lower()))


@pytest.mark.parametrize("task", TASK_NAMES)
def test_held_out_wordings_parse_and_are_disjoint_from_training(task: str) -> None:
    scene, trained = task_templates(task, "trained")
    held_scene, held_out = task_templates(task, "held-out")
    assert held_scene == scene
    trained_words = {_words(fill(t, "red", "blue")) for t in trained}
    for template in held_out:
        text = fill(template, "red", "blue")
        parsed = parse_instruction(text)
        assert (parsed.kind, parsed.color) == (
            parse_instruction(fill(trained[0], "red", "blue")).kind,
            "red",
        ), text
        assert _words(text) not in trained_words, f"{text!r} is worded as in training"
    assert all(t[0].isupper() for t in held_out)  # mixed case...
    assert any(t[-1] in "!." for t in held_out)  # ...and punctuation
    # Every word of the held-out set is seen in training somewhere (only the combination is new).
    all_trained = {
        w for _, _, ts in TASK_TEMPLATES for t in ts for w in _words(fill(t, "red", "blue"))
    }
    assert all(w in all_trained for t in held_out for w in _words(fill(t, "red", "blue")))
    with pytest.raises(UnknownNameError, match="valid: held-out, trained"):
        task_templates(task, "mixed")


def test_training_draws_only_trained_wordings() -> None:
    rng = np.random.default_rng(0)
    held = {
        _words(fill(t, a, b))
        for ts in HELD_OUT_TEMPLATES.values()
        for t in ts
        for a in ("red", "green", "blue")
        for b in ("red", "green", "blue")
    }
    for task in TASK_NAMES:
        for _ in range(50):
            _, text = draw_instruction(rng, task)
            assert _words(text) not in held, text
