"""Bradley-Terry ratings with Davidson ties: a MAP fit under a weak Gaussian prior, with intervals
that stay honest from the first vote (docs/design/arena-statistics.md).

For models i and j with strengths θ and tie parameter nu = e^η (Davidson 1970):
    P(i beats j) = e^θi / D,   P(tie) = nu e^((θi+θj)/2) / D,   D = e^θi + e^θj + nu e^((θi+θj)/2).
θ is centred (mean 0) and shown on the Elo-like scale 1000 + 400/ln10 · θ, so 400 points are
10:1 odds. "Both bad" votes count as ties. Each θ has the prior N(0, PRIOR_SD²): the ridge
1/(2·PRIOR_SD²) of the objective, which also keeps θ finite when a model never lost.

A model's interval is the envelope of two: the Laplace interval (the posterior covariance is
the inverse Hessian at the MAP), honest at a handful of votes where a bootstrap of them only
resamples itself, and the bootstrap percentile interval, which guards against a misfitting
model at many votes. The fit is a batched Newton method: the point estimate and all bootstrap
replicates are rows of one (rows, models + 1) array, so 1000 rounds cost tens of milliseconds.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.special import log_softmax
from scipy.stats import norm

SCALE = 400 / math.log(10)
BASE = 1000.0
OUTCOMES = ("a", "b", "tie", "both_bad")
ETA_BOUNDS = (-12.0, 6.0)  # nu from 6e-6 to 400: no ties at all puts η at the lower bound
ROUNDING = 1e-12  # relative: how much a line-search step may raise the objective
PRIOR_SD = 2.0  # θ units (2·SCALE ≈ 347 rating points): the prior sd of each model's strength
PROVISIONAL_VOTES = 20  # the stated threshold: a model with fewer votes is shown as provisional


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
    rating: float  # 1000 + 400/ln10 · θ, θ the MAP estimate (centred)
    ci_low: float  # envelope of the Laplace and bootstrap percentile intervals (95% by default)
    ci_high: float
    rank: int  # 1 + the number of models whose CI lies wholly above this one's
    wins: int
    ties: int  # ties and both-bad votes
    losses: int
    sd: float  # rating points: the Laplace posterior sd of the (centred) rating
    provisional: bool  # fewer votes than the board's `provisional_votes`

    @property
    def votes(self) -> int:
        return self.wins + self.ties + self.losses


@dataclass(frozen=True)
class Leaderboard:
    ratings: list[Rating]  # best first
    tie_parameter: float  # Davidson's nu (its MAP; flat prior within ETA_BOUNDS)
    votes: int
    bootstrap_rounds: int  # 0: Laplace intervals only
    # rating points²: the Laplace posterior covariance of the centred ratings, rows in `ratings`
    # order (what pair sampling learns from)
    covariance: np.ndarray = field(compare=False)
    prior_sd: float  # θ units: the prior the board was fitted with
    provisional_votes: int


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


@dataclass(frozen=True)
class Design:
    """The model as linear maps: each (pair, outcome) logit is `logits @ (θ, η)`."""

    logits: np.ndarray  # (pairs · 3, models + 1): i wins, j wins, tie per pair
    outer: np.ndarray  # (pairs · 9, (models + 1)²): x_a ⊗ x_b per pair and pair of outcomes
    penalty: np.ndarray  # (models + 1,): 1 on θ (the prior's ridge), 0 on η

    @classmethod
    def of(cls, pairs: PairCounts) -> "Design":
        size = len(pairs.models) + 1
        rows = np.arange(len(pairs.i))
        x = np.zeros((len(rows), 3, size))
        x[rows, 0, pairs.i] = x[rows, 1, pairs.j] = 1.0
        x[rows, 2, pairs.i] = x[rows, 2, pairs.j] = 0.5
        x[:, 2, -1] = 1.0
        outer = np.einsum("pak,pbl->pabkl", x, x).reshape(len(rows) * 9, size * size)
        return cls(x.reshape(-1, size), outer, np.append(np.ones(size - 1), 0.0))


def objective(
    params: np.ndarray, design: Design, counts: np.ndarray, ridge: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Negative log-likelihood plus ridge · |θ|² (the prior N(0, 1/(2·ridge)) on each θ) of each
    row of `params` ((rows, models + 1), θ then η) given its `counts` ((rows, pairs, 3)), with
    its gradient and Hessian."""
    rows, size = params.shape
    log_p = log_softmax((params @ design.logits.T).reshape(counts.shape), axis=-1)
    p = np.exp(log_p)
    n = counts.sum(axis=-1, keepdims=True)
    ridged = ridge * design.penalty
    value = -(counts * log_p).sum(axis=(1, 2)) + (params**2) @ ridged
    grad = (n * p - counts).reshape(rows, -1) @ design.logits + 2 * ridged * params
    cov = n[..., None] * (p[..., :, None] * np.eye(3) - p[..., :, None] * p[..., None, :])
    hess = (cov.reshape(rows, -1) @ design.outer).reshape(rows, size, size)
    return value, grad, hess + np.diag(2 * ridged)


def newton(
    design: Design,
    counts: np.ndarray,
    start: np.ndarray,
    ridge: float,
    tol: float = 1e-9,
    max_iter: int = 200,
) -> np.ndarray:
    """Minimise `objective` for every row of `counts` at once, from `start`: Newton steps (η
    held at a bound its gradient pushes against) with Armijo backtracking, until no coordinate
    moves by `tol`. Returns the optima, (rows, models + 1)."""
    x = np.array(start, dtype=np.float64)
    # θ + c is as likely as θ: this term (in the Hessian only) keeps the steps centred and
    # solvable without a ridge. It moves no optimum: the gradient's sum over θ is 2·ridge·Σθ.
    gauge = np.outer(design.penalty, design.penalty)
    todo = np.arange(len(x))
    value, grad, hess = objective(x, design, counts, ridge)
    for _ in range(max_iter):
        eta = x[todo, -1]
        low, high = eta <= ETA_BOUNDS[0], eta >= ETA_BOUNDS[1]
        pinned = (low & (grad[:, -1] >= 0)) | (high & (grad[:, -1] <= 0))  # 0: no votes
        free = np.ones_like(grad)
        free[pinned, -1] = 0.0
        system = hess * free[:, :, None] * free[:, None, :] + gauge
        system[pinned, -1, -1] = 1.0
        step = -np.linalg.solve(system, (grad * free)[..., None])[..., 0]
        moving = np.abs(step).max(axis=1) >= tol
        todo, value, grad, hess, step = (a[moving] for a in (todo, value, grad, hess, step))
        scale = np.ones(len(todo))
        pending = np.arange(len(todo))  # rows whose step is not accepted yet
        for _ in range(50):
            if not len(pending):
                break
            rows = todo[pending]
            trial = x[rows] + scale[pending, None] * step[pending]
            trial[:, -1] = np.clip(trial[:, -1], *ETA_BOUNDS)
            t_value, t_grad, t_hess = objective(trial, design, counts[rows], ridge)
            armijo = 1e-4 * np.sum(grad[pending] * (trial - x[rows]), axis=1)
            ok = t_value <= value[pending] + armijo + ROUNDING * np.abs(value[pending])
            done = pending[ok]
            x[todo[done]] = trial[ok]
            value[done], grad[done], hess[done] = t_value[ok], t_grad[ok], t_hess[ok]
            pending = pending[~ok]
            scale[pending] /= 2
        stalled = np.isin(np.arange(len(todo)), pending)  # no decrease left at this precision
        todo, value, grad, hess = (a[~stalled] for a in (todo, value, grad, hess))
        if not len(todo):
            break
    return x


def ridge_of(prior_sd: float) -> float:
    """The ridge that is the prior N(0, prior_sd²) on each θ (0 for an infinite sd: the MLE)."""
    return 1 / (2 * prior_sd**2)


def fit(
    pairs: PairCounts,
    counts: np.ndarray | None = None,
    start: np.ndarray | None = None,
    prior_sd: float = PRIOR_SD,
) -> tuple[np.ndarray, np.ndarray]:
    """MAP θ (centred; (rows, models)) and nu ((rows,)) for each row of `counts` ((rows,
    pairs, 3); by default the one row observed), all fitted at once from `start` ((models + 1,),
    θ then η; zeros by default). `prior_sd` = inf gives the maximum-likelihood fit, which
    diverges when a model never lost."""
    counts = pairs.counts[None] if counts is None else counts
    size = len(pairs.models) + 1
    x0 = np.tile(np.zeros(size) if start is None else start, (len(counts), 1))
    # Without ties the likelihood rises as η falls, without wins as it rises: η is at a bound.
    ties, decided = counts[..., 2].sum(axis=1), counts[..., :2].sum(axis=(1, 2))
    x0[ties == 0, -1], x0[decided == 0, -1] = ETA_BOUNDS
    x = newton(Design.of(pairs), counts, x0, ridge_of(prior_sd))
    theta = x[:, :-1] - x[:, :-1].mean(axis=1, keepdims=True)
    return theta, np.exp(x[:, -1])


def laplace_covariance(
    pairs: PairCounts, theta: np.ndarray, nu: float, prior_sd: float = PRIOR_SD
) -> np.ndarray:
    """The posterior covariance of the centred θ ((models, models), θ units) at the MAP
    (`theta`, `nu`): the inverse Hessian of the penalized objective in θ and η jointly (in θ
    alone when η is pinned at a bound), then C Σ Cᵀ with C = I - 11ᵀ/models.

    The shift (1, …, 1, 0) is an eigenvector of the Hessian (the likelihood ignores it), so
    adding the gauge term along it changes nothing once centred, and makes the maximum-likelihood
    Hessian (`prior_sd` = inf) invertible: its centred inverse is then the pseudo-inverse.
    """
    design = Design.of(pairs)
    x = np.append(theta, math.log(nu))
    hess = objective(x[None], design, pairs.counts[None], ridge_of(prior_sd))[2][0]
    hess += np.outer(design.penalty, design.penalty)
    models = len(theta)
    pinned = bool(np.isclose(x[-1], ETA_BOUNDS, atol=1e-9).any())
    size = models if pinned else models + 1
    inverse = np.linalg.inv(hess[:size, :size])[:models, :models]
    centre = np.eye(models) - 1 / models
    return centre @ inverse @ centre


def to_rating(theta: np.ndarray) -> np.ndarray:
    return BASE + SCALE * theta


def leaderboard(
    votes: Sequence[Vote],
    rounds: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    prior_sd: float = PRIOR_SD,
    provisional_votes: int = PROVISIONAL_VOTES,
) -> Leaderboard:
    """The board of the models that have votes: `rate` of the votes per pair."""
    return rate(PairCounts.from_votes(votes), rounds, seed, level, prior_sd, provisional_votes)


def rate(
    pairs: PairCounts,
    rounds: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    prior_sd: float = PRIOR_SD,
    provisional_votes: int = PROVISIONAL_VOTES,
) -> Leaderboard:
    """MAP fit and Laplace intervals, then the bootstrap: resample the votes `rounds` times
    (multinomially, seeded; 0 for none) and fit every replicate at once, starting from the MAP.
    Each model's interval (at `level`) is the envelope of its Laplace and bootstrap intervals;
    a model with fewer than `provisional_votes` votes is provisional."""
    models = len(pairs.models)
    total = int(pairs.counts.sum())
    if not models:
        return Leaderboard([], 0.0, 0, rounds, np.zeros((0, 0)), prior_sd, provisional_votes)
    point, nus = fit(pairs, prior_sd=prior_sd)
    theta, nu = point[0], float(nus[0])
    covariance = laplace_covariance(pairs, theta, nu, prior_sd)
    sd = np.sqrt(np.diag(covariance))
    z = float(norm.ppf((1 + level) / 2))
    low, high = theta - z * sd, theta + z * sd
    if rounds and total:
        flat = pairs.counts.ravel()
        resampled = np.random.default_rng(seed).multinomial(total, flat / total, size=rounds)
        counts = resampled.reshape(rounds, -1, 3).astype(np.float64)
        samples = fit(pairs, counts, np.append(theta, math.log(nu)), prior_sd)[0]
        tail = (1 - level) / 2 * 100
        boot_low, boot_high = np.percentile(samples, [tail, 100 - tail], axis=0)
        low, high = np.minimum(low, boot_low), np.maximum(high, boot_high)
    ratings, low, high = to_rating(theta), to_rating(low), to_rating(high)
    record = _tally(pairs)
    rows = [
        Rating(
            model,
            float(ratings[k]),
            float(low[k]),
            float(high[k]),
            1 + int(np.sum(low > high[k])),
            *record[k],
            sd=float(SCALE * sd[k]),
            provisional=sum(record[k]) < provisional_votes,
        )
        for k, model in enumerate(pairs.models)
    ]
    order = sorted(range(models), key=lambda k: (rows[k].rank, -rows[k].rating))
    return Leaderboard(
        [rows[k] for k in order],
        nu,
        total,
        rounds,
        SCALE**2 * covariance[np.ix_(order, order)],
        prior_sd,
        provisional_votes,
    )


def _tally(pairs: PairCounts) -> list[tuple[int, int, int]]:
    """Wins, ties (and both-bad) and losses per model, in `pairs.models` order."""
    record = np.zeros((len(pairs.models), 3), dtype=np.int64)
    won_i, won_j, tie = pairs.counts.astype(np.int64).T
    for column, (at_i, at_j) in enumerate([(won_i, won_j), (tie, tie), (won_j, won_i)]):
        np.add.at(record[:, column], pairs.i, at_i)
        np.add.at(record[:, column], pairs.j, at_j)
    return [(int(w), int(t), int(lo)) for w, t, lo in record]


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
