"""Bradley-Terry ratings with Davidson ties, fitted by maximum likelihood, with bootstrap CIs.

For models i and j with strengths θ and tie parameter nu = e^η (Davidson 1970):
    P(i beats j) = e^θi / D,   P(tie) = nu e^((θi+θj)/2) / D,   D = e^θi + e^θj + nu e^((θi+θj)/2).
θ is centred (mean 0) and shown on the Elo-like scale 1000 + 400/ln10 · θ, so 400 points are
10:1 odds. "Both bad" votes count as ties. A tiny ridge keeps θ finite when a model never
lost (perfect separation has no maximum-likelihood estimate); it is negligible otherwise.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

SCALE = 400 / math.log(10)
BASE = 1000.0
OUTCOMES = ("a", "b", "tie", "both_bad")
ETA_BOUNDS = (-12.0, 6.0)  # nu from 6e-6 to 400: no ties at all puts η at the lower bound


@dataclass(frozen=True)
class Vote:
    """One vote: the models on sides a and b and the outcome."""

    model_a: str
    model_b: str
    choice: str  # one of OUTCOMES

    def __post_init__(self) -> None:
        if self.choice not in OUTCOMES:
            raise ValueError(f"choice {self.choice!r} must be one of {', '.join(OUTCOMES)}")
        if self.model_a == self.model_b:
            raise ValueError(f"a model cannot play itself ({self.model_a})")


@dataclass(frozen=True)
class Rating:
    """One model's row of the leaderboard."""

    model: str
    rating: float  # 1000 + 400/ln10 · θ
    ci_low: float  # bootstrap percentile interval (95% by default)
    ci_high: float
    rank: int  # 1 + the number of models whose CI lies wholly above this one's
    wins: int
    ties: int  # ties and both-bad votes
    losses: int

    @property
    def votes(self) -> int:
        return self.wins + self.ties + self.losses


@dataclass(frozen=True)
class Leaderboard:
    ratings: list[Rating]  # best first
    tie_parameter: float  # Davidson's nu
    votes: int
    bootstrap_rounds: int


@dataclass(frozen=True)
class PairCounts:
    """Votes aggregated per unordered pair: i < j index `models`."""

    models: list[str]
    i: np.ndarray
    j: np.ndarray
    counts: np.ndarray  # (pairs, 3): i won, j won, tie

    @classmethod
    def from_votes(cls, votes: Sequence[Vote]) -> "PairCounts":
        models = sorted({v.model_a for v in votes} | {v.model_b for v in votes})
        index = {m: k for k, m in enumerate(models)}
        cells: dict[tuple[int, int], list[int]] = {}
        for vote in votes:
            a, b = index[vote.model_a], index[vote.model_b]
            i, j = min(a, b), max(a, b)
            row = cells.setdefault((i, j), [0, 0, 0])
            if vote.choice in ("tie", "both_bad"):
                row[2] += 1
            else:
                winner = a if vote.choice == "a" else b
                row[0 if winner == i else 1] += 1
        pairs = sorted(cells)
        return cls(
            models,
            np.array([p[0] for p in pairs], dtype=np.intp),
            np.array([p[1] for p in pairs], dtype=np.intp),
            np.array([cells[p] for p in pairs], dtype=np.float64).reshape(-1, 3),
        )


def _nll(
    params: np.ndarray, pairs: PairCounts, counts: np.ndarray, ridge: float
) -> tuple[float, np.ndarray]:
    """Negative log-likelihood of the Davidson model and its gradient."""
    theta, eta = params[:-1], params[-1]
    ti, tj = theta[pairs.i], theta[pairs.j]
    tie_logit = eta + 0.5 * (ti + tj)
    log_d = np.logaddexp(np.logaddexp(ti, tj), tie_logit)
    wins_i, wins_j, ties = counts[:, 0], counts[:, 1], counts[:, 2]
    n = counts.sum(axis=1)
    loglik = wins_i * (ti - log_d) + wins_j * (tj - log_d) + ties * (tie_logit - log_d)
    p_i, p_j, p_t = np.exp(ti - log_d), np.exp(tj - log_d), np.exp(tie_logit - log_d)
    grad_i = wins_i + 0.5 * ties - n * (p_i + 0.5 * p_t)
    grad_j = wins_j + 0.5 * ties - n * (p_j + 0.5 * p_t)
    size = len(theta)
    grad_theta = np.bincount(pairs.i, grad_i, size) + np.bincount(pairs.j, grad_j, size)
    grad = np.append(-grad_theta + 2 * ridge * theta, -(ties - n * p_t).sum())
    return float(-loglik.sum() + ridge * theta @ theta), grad


def fit(
    pairs: PairCounts,
    counts: np.ndarray | None = None,
    start: np.ndarray | None = None,
    ridge: float = 1e-4,
) -> tuple[np.ndarray, float]:
    """Maximum-likelihood θ (centred) and nu for the given per-pair counts."""
    counts = pairs.counts if counts is None else counts
    size = len(pairs.models)
    x0 = np.zeros(size + 1) if start is None else start
    bounds = [(None, None)] * size + [ETA_BOUNDS]
    result = minimize(
        _nll,
        x0,
        args=(pairs, counts, ridge),
        jac=True,
        method="L-BFGS-B",
        bounds=bounds,
        options={"maxiter": 500, "ftol": 1e-12, "gtol": 1e-8},
    )
    theta = result.x[:-1] - result.x[:-1].mean()
    return theta, float(math.exp(result.x[-1]))


def to_rating(theta: np.ndarray) -> np.ndarray:
    return BASE + SCALE * theta


def leaderboard(
    votes: Sequence[Vote],
    rounds: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    ridge: float = 1e-4,
) -> Leaderboard:
    """Fit, then bootstrap: resample the votes `rounds` times (multinomially, seeded)."""
    if not votes:
        return Leaderboard([], 0.0, 0, rounds)
    pairs = PairCounts.from_votes(votes)
    theta, nu = fit(pairs, ridge=ridge)
    start = np.append(theta, math.log(max(nu, math.exp(ETA_BOUNDS[0]))))
    flat = pairs.counts.ravel()
    total = int(flat.sum())
    rng = np.random.default_rng(seed)
    samples = np.empty((rounds, len(pairs.models)))
    for r in range(rounds):
        resampled = rng.multinomial(total, flat / total).reshape(-1, 3).astype(np.float64)
        samples[r] = fit(pairs, resampled, start, ridge)[0]
    tail = (1 - level) / 2 * 100
    low, high = (to_rating(q) for q in np.percentile(samples, [tail, 100 - tail], axis=0))
    ratings = to_rating(theta)
    record = _tally(votes, pairs.models)
    rows = [
        Rating(
            model,
            float(ratings[k]),
            float(low[k]),
            float(high[k]),
            1 + int(np.sum(low > high[k])),
            *record[model],
        )
        for k, model in enumerate(pairs.models)
    ]
    rows.sort(key=lambda row: (row.rank, -row.rating))
    return Leaderboard(rows, nu, len(votes), rounds)


def _tally(votes: Sequence[Vote], models: list[str]) -> dict[str, tuple[int, int, int]]:
    """Wins, ties (and both-bad) and losses per model."""
    tally = {m: [0, 0, 0] for m in models}
    for vote in votes:
        if vote.choice in ("tie", "both_bad"):
            tally[vote.model_a][1] += 1
            tally[vote.model_b][1] += 1
        else:
            winner, loser = (
                (vote.model_a, vote.model_b) if vote.choice == "a" else (vote.model_b, vote.model_a)
            )
            tally[winner][0] += 1
            tally[loser][2] += 1
    return {m: (w, t, lo) for m, (w, t, lo) in tally.items()}


def online_elo(votes: Sequence[Vote], k: float = 4.0) -> dict[str, float]:
    """Sequential Elo in vote order (a preview that depends on order; ties score ½)."""
    elo: dict[str, float] = {}
    for vote in votes:
        ra, rb = elo.setdefault(vote.model_a, BASE), elo.setdefault(vote.model_b, BASE)
        expected_a = 1 / (1 + 10 ** ((rb - ra) / 400))
        score_a = {"a": 1.0, "b": 0.0}.get(vote.choice, 0.5)
        elo[vote.model_a] = ra + k * (score_a - expected_a)
        elo[vote.model_b] = rb - k * (score_a - expected_a)
    return elo
