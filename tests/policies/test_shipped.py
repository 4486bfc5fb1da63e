"""The checkpoints shipped in the package load, are small, and solve tasks (docs/models.md)."""

import pytest

from vlarena.evaluation import EvalConfig, evaluate, summarize
from vlarena.policies import DeviceConfig, load_policy
from vlarena.policies.shipped import SHIPPED, shipped_checkpoint, shipped_checkpoints

# Floors on the first 10 fixed eval seeds of the touch task: (success rate, share of episodes
# acting on some cube). Measured on this machine: flow 3/10 and 9/10, AR 3/10 and 6/10
# (docs/models.md); one episode of margin, as CPU floating point differs across machines.
FLOORS = {"vla-flow-small": (0.2, 0.8), "vla-ar-small": (0.2, 0.5)}


def test_every_shipped_checkpoint_is_installed_small_and_loads() -> None:
    assert [p.name for p in shipped_checkpoints()] == list(SHIPPED)
    for name in SHIPPED:
        path = shipped_checkpoint(name)
        assert path is not None
        size_mb = sum(f.stat().st_size for f in path.iterdir()) / 1e6
        assert size_mb < 8
        policy = load_policy(path, DeviceConfig())
        assert policy.info.name == name
        assert policy.info.camera_names == ("front", "wrist")
    assert shipped_checkpoint("vla-flow-tiny") is None


@pytest.mark.slow
@pytest.mark.parametrize("name", list(FLOORS))
def test_shipped_checkpoints_reach_for_cubes(name: str) -> None:
    success_floor, acted_floor = FLOORS[name]
    results = evaluate(name, EvalConfig(tasks=("touch",), episodes=10, workers=2))
    (row,) = summarize(results)
    assert row.success_rate >= success_floor, row
    assert row.acted / row.episodes >= acted_floor, row
