"""Temporal ensembling: the weighted mean of every chunk's prediction for a step."""

import numpy as np
import pytest

from vlarena.control import TemporalEnsemble
from vlarena.errors import ConfigError


def chunk(first: float, length: int = 4) -> np.ndarray:
    """Actions first, first + 1, ... (two dimensions, equal)."""
    return np.repeat(np.arange(first, first + length, dtype=np.float32)[:, None], 2, axis=1)


def test_mean_of_the_overlapping_predictions() -> None:
    ensemble = TemporalEnsemble(coeff=0.0)
    ensemble.add(0, chunk(0))  # predicts steps 0..3 as 0, 1, 2, 3
    np.testing.assert_allclose(ensemble.action(0), [0, 0])
    ensemble.add(1, chunk(10))  # steps 1..4 as 10, 11, 12, 13
    np.testing.assert_allclose(ensemble.action(1), [5.5, 5.5])  # (1 + 10) / 2
    np.testing.assert_allclose(ensemble.action(2), [6.5, 6.5])  # (2 + 11) / 2
    ensemble.add(3, chunk(20))  # steps 3..6
    np.testing.assert_allclose(ensemble.action(3), [(3 + 12 + 20) / 3] * 2)
    np.testing.assert_allclose(ensemble.action(4), [(13 + 21) / 2] * 2)  # chunk 0 ended at 3
    ensemble.add(5, chunk(30))  # chunks 0 and 1 (steps 0..3, 1..4) are dropped
    np.testing.assert_allclose(ensemble.action(5), [(22 + 30) / 2] * 2)


def test_weights_favour_the_oldest_or_the_newest() -> None:
    for coeff, expected in [(0.01, None), (10.0, 1.0), (-10.0, 10.0)]:
        ensemble = TemporalEnsemble(coeff)
        ensemble.add(0, chunk(0))
        ensemble.add(1, chunk(10))
        value = float(ensemble.action(1)[0])
        if expected is None:  # ACT's default: nearly the plain mean
            w_new = np.exp(-0.01) / (1 + np.exp(-0.01))
            assert value == pytest.approx(1 + 9 * w_new, rel=1e-6)
        else:
            assert value == pytest.approx(expected, abs=1e-3)


@pytest.mark.parametrize("coeff", [float("nan"), float("inf"), 10.5, -11.0])
def test_unusable_coefficient_is_refused(coeff: float) -> None:
    with pytest.raises(ConfigError, match="coefficient"):
        TemporalEnsemble(coeff)


def test_a_step_no_chunk_predicts_is_an_error() -> None:
    ensemble = TemporalEnsemble()
    ensemble.add(0, chunk(0))
    with pytest.raises(ConfigError, match="no chunk predicts control step 4"):
        ensemble.action(4)
