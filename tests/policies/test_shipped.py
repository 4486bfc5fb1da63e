"""The checkpoints shipped in the package load, are small, and solve tasks (docs/models.md)."""

import pytest

from vlarena.evaluation import EvalConfig, evaluate, summarize
from vlarena.policies import DeviceConfig, load_policy
from vlarena.policies.shipped import SHIPPED, shipped_checkpoint, shipped_checkpoints

# Floors on the first 10 fixed eval seeds of each task, run as `vlarena eval` runs them (asked
# every step, chunks ensembled): (success, correct-target rate), set below what was measured on
# this machine on 2026-12-07 (flow: touch 10/10, lift 10/10; AR: touch 10/10, lift 9/10; every
# target right; docs/models.md), leaving room for CPU floating point that differs across
# machines, and above random weights (0/10: the last test).
FLOORS = {
    "vla-flow-small": {"touch": (0.8, 0.9), "lift": (0.7, 0.9)},
    "vla-ar-small": {"touch": (0.7, 0.8), "lift": (0.5, 0.8)},
}


def test_every_shipped_checkpoint_is_installed_small_and_loads() -> None:
    assert [p.name for p in shipped_checkpoints()] == list(SHIPPED)
    for name in SHIPPED:
        path = shipped_checkpoint(name)
        assert path is not None
        size_mb = sum(f.stat().st_size for f in path.iterdir()) / 1e6
        assert size_mb < 10
        policy = load_policy(path, DeviceConfig())
        assert policy.info.name == name
        assert policy.info.camera_names == ("front", "wrist")
    assert shipped_checkpoint("vla-flow-tiny") is None


def _scores(model: str, tasks: tuple[str, ...]) -> dict[str, tuple[float, float | None]]:
    results = evaluate(model, EvalConfig(tasks=tasks, episodes=10, workers=2))
    return {row.task: (row.success_rate, row.correct_target_rate) for row in summarize(results)}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(FLOORS))
def test_shipped_checkpoints_do_their_tasks_on_the_named_cube(name: str) -> None:
    floors = FLOORS[name]
    for task, (success, target) in _scores(name, tuple(floors)).items():
        assert success >= floors[task][0], (task, success)
        assert target is not None, task
        assert target >= floors[task][1], (task, target)


@pytest.mark.slow
def test_the_floors_fail_a_model_with_random_weights() -> None:
    lowest = {t: min(f[t][0] for f in FLOORS.values() if t in f) for t in ("touch", "lift")}
    scores = _scores("vla-flow:film", tuple(lowest))
    assert all(success < lowest[task] for task, (success, _) in scores.items())
