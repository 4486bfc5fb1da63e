"""Temporal ensembling (as ACT does): every recent chunk's prediction for a control step, averaged.

A model asked every `horizon` steps returns chunks that overlap: at step t the chunks asked at
t, t - h, t - 2h, … each predicted an action for t. The action run is their mean, weighted
exp(-decay·i) with i = 0 the oldest prediction. This smooths the commanded targets and averages
out one call's errors (a grasp closing early, a place target a centimetre off). ACT's default
decay, 0.01, is nearly a plain mean; a negative one favours the newest chunks. Only the newest
`max_chunks` chunks take part: a model with long chunks (LeRobot's pi0 predicts 50 actions)
would otherwise average plans made seconds apart.
"""

import numpy as np

from vlarena.control.scheduler import Actions
from vlarena.errors import ConfigError

MAX_DECAY = 100.0  # beyond this the oldest (or newest) prediction alone has the weight anyway


class TemporalEnsemble:
    """Chunks in, as they are predicted; the action for each control step out."""

    def __init__(self, decay_per_chunk: float = 0.01, max_chunks: int = 8) -> None:
        if not abs(decay_per_chunk) <= MAX_DECAY or max_chunks < 1:
            raise ConfigError(f"the ensemble needs a decay within ±{MAX_DECAY} and a chunk or more")
        self.decay_per_chunk, self.max_chunks = decay_per_chunk, max_chunks
        self._chunks: list[tuple[int, Actions]] = []  # (first step, actions), oldest first

    def add(self, step: int, actions: Actions) -> None:
        """A chunk whose first action is for control step `step` (chunks come in step order)."""
        assert not self._chunks or step >= self._chunks[-1][0], "chunks must come in step order"
        self._chunks.append((step, actions))
        self._chunks = [(s, a) for s, a in self._chunks[-self.max_chunks :] if s + len(a) > step]

    def action(self, step: int) -> Actions:
        """The weighted mean of the kept chunks' predictions for `step`."""
        predictions = [a[step - s] for s, a in self._chunks if 0 <= step - s < len(a)]
        assert predictions, f"no chunk predicts control step {step}"
        exponents = -self.decay_per_chunk * np.arange(len(predictions))
        weights = np.exp(exponents - exponents.max())  # no overflow
        mean = weights @ np.stack(predictions) / weights.sum()
        return mean.astype(np.float32)
