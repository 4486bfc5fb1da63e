"""The trunk probe: fits on the first episodes, scores the last, and refuses what it cannot read."""

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from vlarena.data.dataset import DemoDataset, write_dataset
from vlarena.errors import ConfigError
from vlarena.evaluation.probe import COLUMNS, ProbeConfig, fit_mask, probe
from vlarena.policies import PRESETS, NativeVLAPolicy, get_policy_type


@pytest.fixture
def trunk(tmp_path: Path) -> Path:
    path = tmp_path / "film-tiny"
    cls = get_policy_type("vla-flow")
    assert issubclass(cls, NativeVLAPolicy)
    cls.create(PRESETS["film-tiny"], "probed", seed=0).save(path)
    return path


def test_the_probe_reads_both_places_and_holds_out_the_last_episodes(demo_dataset: Path) -> None:
    data = DemoDataset(demo_dataset)
    episodes = {e.task: i for i, e in enumerate(data.meta.episodes)}
    xy = np.asarray(data.target)[:, COLUMNS]
    episode = np.asarray(data.episode)
    touch, stack = xy[episode == episodes["touch"]], xy[episode == episodes["stack"]]
    np.testing.assert_array_equal(touch[:, :2], touch[:, 2:])  # nothing placed: the cube itself
    assert np.abs(stack[0, :2] - stack[0, 2:]).max() > 0.03  # the other cube, elsewhere
    frames = np.arange(0, len(data), 3)
    fit = fit_mask(data, frames, 0.3)  # 7 episodes: the last 2 held out
    np.testing.assert_array_equal(fit, episode[frames] < 5)
    with pytest.raises(ConfigError, match="cannot be split"):
        fit_mask(data, frames, 0.01)
    with pytest.raises(ConfigError, match="cannot be split"):
        fit_mask(data, np.arange(0, len(data), len(data)), 0.3)  # one frame


def test_the_probe_scores_reproducibly(demo_dataset: Path, trunk: Path) -> None:
    cfg = ProbeConfig(steps=20, starts=2, frame_stride=3, test_share=0.3)
    result = probe(demo_dataset, trunk, cfg)
    assert len(result.named_cm) == len(result.place_cm) == 2
    assert all(math.isfinite(e) and 0 < e < 100 for e in result.named_cm + result.place_cm)
    assert result.named_cm[0] != result.named_cm[1]  # two heads from different weights
    assert probe(demo_dataset, trunk, cfg) == result


def test_the_probe_refuses_what_it_cannot_read(
    demo_dataset: Path, trunk: Path, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match="steps"):
        ProbeConfig(steps=0)
    data = DemoDataset(demo_dataset)
    old = tmp_path / "old"  # recorded before the place targets
    records = [replace(r, targets=r.targets[:, :8]) for r in data.records()]
    write_dataset(old, records, data.meta.image_size, data.meta.cameras, {}, data.meta.dropped)
    with pytest.raises(ConfigError, match="records only 8"):
        probe(old, trunk, ProbeConfig(steps=1))
