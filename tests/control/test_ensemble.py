"""Temporal ensembling: the weighted mean of the recent chunks' predictions for a step."""

import numpy as np
import pytest

from vlarena.control import TemporalEnsemble
from vlarena.errors import ConfigError


def chunk(first: float, length: int = 4) -> np.ndarray:
    """Actions first, first + 1, ... (two dimensions, equal)."""
    return np.repeat(np.arange(first, first + length, dtype=np.float32)[:, None], 2, axis=1)


def test_mean_of_the_overlapping_predictions() -> None:
    ensemble = TemporalEnsemble(decay_per_chunk=0.0)
    ensemble.add(0, chunk(0))  # predicts steps 0..3 as 0, 1, 2, 3
    np.testing.assert_allclose(ensemble.action(0), [0, 0])
    ensemble.add(1, chunk(10))  # steps 1..4 as 10, 11, 12, 13
    np.testing.assert_allclose(ensemble.action(1), [5.5, 5.5])  # (1 + 10) / 2
    np.testing.assert_allclose(ensemble.action(2), [6.5, 6.5])  # (2 + 11) / 2
    ensemble.add(3, chunk(20))  # steps 3..6
    np.testing.assert_allclose(ensemble.action(3), [(3 + 12 + 20) / 3] * 2)
    np.testing.assert_allclose(ensemble.action(4), [(13 + 21) / 2] * 2)  # chunk 0 ended at 3
    ensemble.add(5, chunk(30))
    np.testing.assert_allclose(ensemble.action(5), [(22 + 30) / 2] * 2)


def test_only_the_newest_chunks_take_part() -> None:
    ensemble = TemporalEnsemble(decay_per_chunk=0.0, max_chunks=2)
    for step in range(3):
        ensemble.add(step, chunk(10 * step, length=50))  # long chunks: all three cover step 2
    np.testing.assert_allclose(ensemble.action(2), [(11 + 20) / 2] * 2)  # not chunk 0's 2


def test_weights_favour_the_oldest_or_the_newest() -> None:
    for decay, expected in [(0.01, None), (50.0, 1.0), (-50.0, 10.0), (-100.0, 10.0)]:
        ensemble = TemporalEnsemble(decay)
        ensemble.add(0, chunk(0))
        ensemble.add(1, chunk(10))
        value = float(ensemble.action(1)[0])
        if expected is None:  # ACT's default: nearly the plain mean
            w_new = np.exp(-0.01) / (1 + np.exp(-0.01))
            assert value == pytest.approx(1 + 9 * w_new, rel=1e-6)
        else:  # however steep, a finite weighted mean
            assert value == pytest.approx(expected, abs=1e-3)


@pytest.mark.parametrize(
    ("decay", "max_chunks"), [(float("nan"), 8), (float("inf"), 8), (1e308, 8), (0.01, 0)]
)
def test_unusable_settings_are_refused(decay: float, max_chunks: int) -> None:
    with pytest.raises(ConfigError, match="decay within"):
        TemporalEnsemble(decay, max_chunks)
