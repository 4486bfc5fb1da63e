"""Which two models a battle pits: the pairs whose vote would shrink the intervals most.

A vote between i and j adds Fisher information I(θi - θj) along x = e_i - e_j to the posterior
precision, so the Laplace covariance Σ of the centred ratings becomes (Sherman-Morrison)
    Σ' = Σ - I · Σx (Σx)ᵀ / (1 + I · xᵀΣx).
A pair's weight is the square of the expected shrinkage of the summed interval widths,
Σ_k (sd_k - sd'_k), at the current fit; the probabilities mix these weights with a uniform
floor so every pair keeps being drawn, and no model plays more than MAX_SHARE_RATIO times as
often as a uniform draw would have it (docs/design/arena-statistics.md). A model without votes
has its prior: far from known, it is drawn at once.
"""

import random
from collections.abc import Mapping, Sequence
from itertools import combinations
from typing import Literal

import numpy as np

from vlarena.arena.ranking import BASE, SCALE, Leaderboard, PairCounts, rate

EXPLORATION_FLOOR = 0.2  # share of the probability spread evenly over all pairs
SHARPNESS = 2.0  # weights ∝ expected shrinkage^SHARPNESS: 1 stays too close to uniform
# No model is in a battle more than this many times as often as a uniform draw puts it there:
# a voter who knows which model is new (the model cards show it) cannot be sure it plays.
MAX_SHARE_RATIO = 2.0


def pair_probabilities(
    models: Sequence[str], board: Leaderboard, floor: float = EXPLORATION_FLOOR
) -> dict[tuple[str, str], float]:
    """The probability of every unordered pair of `models` (keyed in the order of `models`):
    (1 - floor) in proportion to the square of the pair's expected shrinkage of the interval
    widths, `floor` spread evenly. Models absent from `board` (no votes yet) have its prior."""
    names = list(dict.fromkeys(models))
    if len(names) < 2:
        raise ValueError(f"pairs need two models, got {len(names)}")
    theta, covariance, index = _posterior(names, board)
    a, b = (
        np.array(side) for side in zip(*combinations([index[m] for m in names], 2), strict=True)
    )
    info = _information(theta[a] - theta[b], board.tie_parameter)
    along = covariance[:, a] - covariance[:, b]  # Σx per pair: (all models, pairs)
    spread = along[a, np.arange(len(a))] - along[b, np.arange(len(a))]  # xᵀΣx
    variance = np.diag(covariance)[:, None]
    after = variance - info * along**2 / (1 + info * spread)
    gain = (np.sqrt(variance) - np.sqrt(np.maximum(after, 0.0))).sum(axis=0)
    weight = gain**SHARPNESS
    share = weight / weight.sum() if weight.sum() > 0 else np.full(len(gain), 1 / len(gain))
    uniform = np.full(len(gain), 1 / len(gain))
    probabilities = _capped((1 - floor) * share + floor * uniform, uniform, len(names))
    return {pair: float(p) for pair, p in zip(combinations(names, 2), probabilities, strict=True)}


def _capped(p: np.ndarray, uniform: np.ndarray, models: int) -> np.ndarray:
    """`p` (over the pairs of `models` models, in `combinations` order) mixed towards `uniform`
    just enough that no model's chance to play (the sum over its pairs; linear in the mix)
    exceeds MAX_SHARE_RATIO times its uniform chance, 2 / models."""
    cap = min(1.0, MAX_SHARE_RATIO * 2 / models)
    first, second = (np.array(side) for side in zip(*combinations(range(models), 2), strict=True))

    def plays(q: np.ndarray) -> np.ndarray:
        return np.bincount(first, q, models) + np.bincount(second, q, models)

    now, even = plays(p), plays(uniform)
    over = now > cap
    if not over.any():
        return p
    mix = float(np.max((now[over] - cap) / (now[over] - even[over])))
    return (1 - mix) * p + mix * uniform


def draw_pair(
    rng: random.Random, probabilities: Mapping[tuple[str, str], float]
) -> tuple[str, str]:
    """One pair drawn by its probability, its two sides in random order."""
    pair = rng.choices(list(probabilities), list(probabilities.values()))[0]
    return pair if rng.random() < 0.5 else (pair[1], pair[0])


def _posterior(
    names: list[str], board: Leaderboard
) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """θ and the covariance of the centred θ (θ units) of the board's models and the absent
    `names`, and each model's index. The board's covariance is of its centred θ; the shift it
    leaves out has variance prior_sd²/models (the shift is an eigenvector of the Hessian with
    eigenvalue 1/prior_sd²), and an absent model's θ is N(0, prior_sd²) on its own."""
    rated = [r.model for r in board.ratings]
    everyone = rated + [m for m in names if m not in set(rated)]
    voted, total = len(rated), len(everyone)
    theta = np.zeros(total)
    theta[:voted] = [(r.rating - BASE) / SCALE for r in board.ratings]
    prior = board.prior_sd**2
    covariance = prior * np.eye(total)
    if voted:
        covariance[:voted, :voted] = board.covariance / SCALE**2 + prior / voted
    centre = np.eye(total) - 1 / total
    return theta, centre @ covariance @ centre, {m: k for k, m in enumerate(everyone)}


def _information(difference: np.ndarray, nu: float) -> np.ndarray:
    """Fisher information of one Davidson vote about θi - θj = `difference`:
    (p_i + p_j - (p_i - p_j)²) / 4, which is p(1 - p) without ties."""
    weights = np.stack(
        [np.exp(difference / 2), np.exp(-difference / 2), np.full_like(difference, nu)]
    )
    p_i, p_j, _ = weights / weights.sum(axis=0)
    return (p_i + p_j - (p_i - p_j) ** 2) / 4


def simulate(
    strategy: Literal["active", "uniform"],
    true_ratings: Mapping[str, float],
    votes: int,
    seed: int,
    tie_parameter: float = 0.3,
    refit_every: int = 10,
    joins: Mapping[str, int] | None = None,
) -> list[tuple[int, float]]:
    """A seeded tournament among `true_ratings` (rating points) with Davidson ties: each vote's
    pair drawn by `strategy` ("active": `pair_probabilities` of the latest board; "uniform":
    every pair alike) among the models that have joined (`joins`: a model's vote count before
    it joins; the others are there from the start), the board refitted every `refit_every`
    votes as the arena's cached board is. Returns (votes so far, mean 95% interval width over
    the joined models in rating points) at every refit; the boards have no bootstrap (Laplace
    intervals, which are what the width is once there are many votes)."""
    rng = random.Random(seed)
    names = list(true_ratings)
    joins = joins or {}
    theta = {m: (r - BASE) / SCALE for m, r in true_ratings.items()}
    counts = {pair: np.zeros(3) for pair in combinations(names, 2)}
    present = [m for m in names if joins.get(m, 0) < 1]
    board = _board(present, counts)
    widths = []
    for n in range(1, votes + 1):
        present = [m for m in names if joins.get(m, 0) < n]
        if strategy == "active":
            chosen = pair_probabilities(present, board)
        else:
            chosen = dict.fromkeys(combinations(present, 2), 1.0)
        first, second = sorted(draw_pair(rng, chosen), key=names.index)
        d = theta[first] - theta[second]
        outcome = rng.choices(range(3), [np.exp(d / 2), np.exp(-d / 2), tie_parameter])[0]
        counts[first, second][outcome] += 1
        if n % refit_every == 0:
            board = _board(present, counts)
            widths.append((n, float(np.mean([r.ci_high - r.ci_low for r in board.ratings]))))
    return widths


def _board(models: list[str], counts: Mapping[tuple[str, str], np.ndarray]) -> Leaderboard:
    """The board of `models` (a model without votes has its prior) without bootstrap."""
    pairs = list(combinations(range(len(models)), 2))
    i, j = (np.array(side, dtype=np.intp) for side in zip(*pairs, strict=True))
    table = np.array([counts[models[a], models[b]] for a, b in pairs])
    return rate(PairCounts(models, i, j, table), rounds=0)


def votes_to_width(widths: Sequence[tuple[int, float]], width: float) -> int | None:
    """The first vote count of `simulate`'s output whose mean interval width is `width` or less
    (None if never)."""
    return next((n for n, w in widths if w <= width), None)
