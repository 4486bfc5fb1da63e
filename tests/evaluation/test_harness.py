"""The evaluation harness: hand-checked statistics, fixed seeds, workers, Ray, videos, CLI."""

import json
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import imageio.v3 as iio
import pytest
from typer.testing import CliRunner

from vlarena.cli import app
from vlarena.data import TASK_NAMES
from vlarena.errors import CheckpointError, ConfigError, UnknownNameError
from vlarena.evaluation import (
    EXPERT,
    EpisodeResult,
    EvalConfig,
    eval_instruction,
    eval_seeds,
    evaluate,
    markdown_table,
    summarize,
    wilson_interval,
)
from vlarena.policies import NativeVLAPolicy, VLFeatures
from vlarena.sim import run_episode
from vlarena.sim.tasks import parse_instruction
from vlarena.types import ActionChunk, Observation


def test_wilson_interval_matches_hand_computed_values() -> None:
    # 7/10: p = 0.7, z = 1.96 → centre 0.6446, half-width 0.2477 (Wilson 1927).
    low, high = wilson_interval(7, 10)
    assert low == pytest.approx(0.3968, abs=1e-4)
    assert high == pytest.approx(0.8922, abs=1e-4)
    assert wilson_interval(0, 10)[0] == 0.0
    assert wilson_interval(0, 10)[1] == pytest.approx(0.2775, abs=1e-4)
    assert wilson_interval(10, 10)[0] == pytest.approx(0.7225, abs=1e-4)
    assert wilson_interval(10, 10)[1] == 1.0
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError, match="successes"):
        wilson_interval(3, 2)


def _result(task: str, success: bool, first: str | None, steps: int) -> EpisodeResult:
    return EpisodeResult(task, 0, "touch the red cube", success, first, "red", steps)


def test_summary_of_a_hand_made_case() -> None:
    results = [
        _result("touch", True, "red", 8),
        _result("touch", False, "blue", 40),
        _result("touch", False, None, 40),  # touched nothing: not in the correct-target rate
        _result("touch", True, "red", 12),
        _result("lift", False, None, 60),
    ]
    touch, lift = summarize(results)
    assert (touch.episodes, touch.successes, touch.success_rate) == (4, 2, 0.5)
    assert (touch.ci_low, touch.ci_high) == wilson_interval(2, 4)
    assert touch.acted == 3
    assert touch.correct_target_rate == pytest.approx(2 / 3)
    assert touch.mean_steps == 25.0
    assert lift.correct_target_rate is None
    assert lift.success_rate == 0.0
    table = markdown_table("m", [touch, lift])
    assert "| touch | 2/4 = 50% | 15%-85% | 67% (3) | 25.0 |" in table
    assert "| lift | 0/1 = 0% |" in table
    assert "| - |" in table


def test_seed_lists_are_fixed_and_disjoint_across_tasks() -> None:
    seeds = {task: eval_seeds(task, 50) for task in TASK_NAMES}
    assert eval_seeds("lift", 50) == seeds["lift"]
    flat = [s for task_seeds in seeds.values() for s in task_seeds]
    assert len(set(flat)) == len(flat)
    assert min(flat) >= 1_000_000  # datagen uses small seeds by default
    for task in TASK_NAMES:
        scene, text = eval_instruction(task, seeds[task][0])
        parsed = parse_instruction(text)
        assert parsed.kind is not None
        assert parsed.color is not None
        assert (scene == "bin") == (task == "bin")


def test_wording_splits_name_the_same_task_and_colours_in_other_words() -> None:
    for task in TASK_NAMES:
        for seed in eval_seeds(task, 4):
            scene, trained = eval_instruction(task, seed, "trained")
            held_scene, held = eval_instruction(task, seed, "held-out")
            assert scene == held_scene
            assert trained.lower().split() != held.lower().rstrip("!.").split()
            ours, theirs = parse_instruction(trained), parse_instruction(held)
            assert (ours.kind, ours.color, ours.other) == (theirs.kind, theirs.color, theirs.other)
    with pytest.raises(UnknownNameError, match="wording split"):
        EvalConfig(wordings="mixed")
    results = evaluate(
        EXPERT, EvalConfig(tasks=("touch",), episodes=2, workers=0, wordings="held-out")
    )
    assert all(r.success for r in results)
    assert all(r.instruction[0].isupper() for r in results)


def test_feature_reuse_refreshes_features_every_k_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    original_extract = NativeVLAPolicy.extract_features
    original_act = NativeVLAPolicy.predict_from_features

    def extract(self: NativeVLAPolicy, observations: Sequence[Observation]) -> VLFeatures:
        calls.append("features")
        return original_extract(self, observations)

    def act(self: NativeVLAPolicy, *args: object, **kwargs: object) -> list[ActionChunk]:
        calls.append("act")
        return original_act(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(NativeVLAPolicy, "extract_features", extract)
    monkeypatch.setattr(NativeVLAPolicy, "predict_from_features", act)
    cfg = EvalConfig(tasks=("touch",), episodes=1, workers=0, horizon=2, feature_reuse=3)
    (result,) = evaluate("vla-flow:tiny", cfg)
    model_calls = -(-result.steps // 2)
    assert calls.count("act") == model_calls
    assert calls.count("features") == -(-model_calls // 3)
    assert calls[:4] == ["features", "act", "act", "act"]
    with pytest.raises(ConfigError, match="feature_reuse must be"):
        EvalConfig(feature_reuse=0)


def test_expert_scores_full_marks_in_worker_processes() -> None:
    cfg = EvalConfig(tasks=("touch", "lift", "push_left"), episodes=2, workers=2)
    parallel = evaluate(EXPERT, cfg)
    serial = evaluate(EXPERT, EvalConfig(tasks=cfg.tasks, episodes=2, workers=0))
    assert parallel == serial  # identical start states and outcomes, whatever the workers
    assert [r.task for r in parallel] == [
        "touch",
        "touch",
        "lift",
        "lift",
        "push_left",
        "push_left",
    ]
    assert all(r.success and r.correct_target for r in parallel)


def test_a_random_weight_model_runs_to_its_step_budget() -> None:
    results = evaluate("vla-flow:tiny", EvalConfig(tasks=("touch",), episodes=1, workers=0))
    assert len(results) == 1
    assert results[0].steps == 40 or results[0].success


def test_unknown_models_and_tasks_fail_listing_the_valid_ones() -> None:
    with pytest.raises(UnknownNameError, match="valid: bin, lift, next_to"):
        EvalConfig(tasks=("juggle",))
    for workers in (0, 2):  # never a hang in the worker pool: checked before it starts
        with pytest.raises(UnknownNameError, match="native policy type"):
            evaluate("vla-magic:tiny", EvalConfig(tasks=("touch",), episodes=1, workers=workers))
    with pytest.raises(UnknownNameError, match="preset"):
        evaluate("vla-flow:huge", EvalConfig(tasks=("touch",), episodes=1))
    with pytest.raises(CheckpointError):
        evaluate("no/such/dir", EvalConfig(tasks=("touch",), episodes=1))
    with pytest.raises(ConfigError, match="tasks repeat"):
        EvalConfig(tasks=("touch", "touch"))
    error = UnknownNameError("model", "x", ["a"])  # crosses process boundaries intact
    assert str(pickle.loads(pickle.dumps(error))) == str(error)


@pytest.mark.slow
def test_ray_runs_the_same_episodes() -> None:
    ray = pytest.importorskip("ray")
    cfg = EvalConfig(tasks=("touch", "lift"), episodes=2, workers=0)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        on_ray = evaluate(EXPERT, cfg, use_ray=True)
    finally:
        ray.shutdown()
    assert on_ray == evaluate(EXPERT, cfg)


def test_cli_writes_results_a_plot_and_videos(tmp_path: Path) -> None:
    out = CliRunner().invoke(
        app,
        [
            "eval",
            "--model",
            EXPERT,
            "--tasks",
            "touch,lift",
            "--episodes",
            "2",
            "--workers",
            "0",
            "--videos",
            "1",
            "--out",
            str(tmp_path),
        ],
    )
    assert out.exit_code == 0, out.output
    assert "| touch | 2/2 = 100% |" in out.output
    payload = json.loads((tmp_path / "results.json").read_text())
    assert [t["task"] for t in payload["tasks"]] == ["touch", "lift"]
    assert len(payload["episodes"]) == 4
    assert (tmp_path / "success.png").read_bytes()[:4] == b"\x89PNG"
    videos = sorted((tmp_path / "videos").glob("*.mp4"))
    assert len(videos) == 2  # the first episode of each task
    first = next(e for e in payload["episodes"] if e["video"] == str(videos[1]))
    assert iio.imread(videos[1]).shape[0] == first["steps"]
    bad = CliRunner().invoke(
        app, ["eval", "--model", "nope", "--tasks", "touch", "--episodes", "1", "--workers", "0"]
    )
    assert bad.exit_code == 2
    assert "error" in bad.output


def test_the_execution_options_reach_every_episode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[int | None, bool]] = []

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append((kwargs["horizon"], kwargs["ensemble"]))
        return run_episode(*args, **kwargs)

    monkeypatch.setattr("vlarena.evaluation.harness.run_episode", spy)
    evaluate("vla-flow:tiny", EvalConfig(tasks=("touch",), episodes=1, workers=0))
    args = ["eval", "--model", "vla-flow:tiny", "--tasks", "touch", "--episodes", "1"]
    options = ["--workers", "0", "--horizon", "3", "--no-ensemble", "--out", str(tmp_path)]
    result = CliRunner().invoke(app, [*args, *options])
    assert result.exit_code == 0, result.output
    assert seen == [(1, True), (3, False)]  # the defaults, then the command's options
    config = json.loads((tmp_path / "results.json").read_text())["config"]
    assert (config["horizon"], config["ensemble"]) == (3, False)
