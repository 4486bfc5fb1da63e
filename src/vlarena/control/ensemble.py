"""Temporal ensembling (as ACT does): every chunk's prediction for a control step, averaged.

A model asked every `horizon` steps returns chunks that overlap: at step t the chunks asked at
t, t - h, t - 2h, … each predicted an action for t. The action run is their mean, weighted
exp(-coeff·i) with i = 0 the oldest prediction. This smooths the commanded targets and averages
out one call's errors (a grasp closing early, a place target a centimetre off). ACT's default
coefficient, 0.01, is nearly a plain mean; a negative one favours the newest chunks.
"""

import math

import numpy as np

from vlarena.control.scheduler import Actions
from vlarena.errors import ConfigError

ENSEMBLE_COEFF = 0.01  # ACT's default: nearly equal weights
MAX_COEFF = 10.0  # beyond this one prediction takes all the weight


class TemporalEnsemble:
    """Chunks in, as they are predicted; the action for each control step out."""

    def __init__(self, coeff: float = ENSEMBLE_COEFF) -> None:
        if not (math.isfinite(coeff) and abs(coeff) <= MAX_COEFF):
            raise ConfigError(f"the ensembling coefficient must be in ±{MAX_COEFF}, got {coeff}")
        self.coeff = coeff
        self._chunks: list[tuple[int, Actions]] = []  # (first step, actions), oldest first

    def add(self, step: int, actions: Actions) -> None:
        """A chunk whose first action is for control step `step` (chunks come in step order)."""
        self._chunks = [(s, a) for s, a in self._chunks if s + len(a) > step]
        self._chunks.append((step, actions))

    def action(self, step: int) -> Actions:
        """The weighted mean of the predictions for `step` of the chunks added so far."""
        predictions = [a[step - s] for s, a in self._chunks if 0 <= step - s < len(a)]
        if not predictions:
            raise ConfigError(f"no chunk predicts control step {step}")
        weights = np.exp(-self.coeff * np.arange(len(predictions)))
        mean = weights @ np.stack(predictions) / weights.sum()
        return mean.astype(np.float32)
