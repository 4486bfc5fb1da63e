"""Bradley-Terry-Davidson ratings: a hand-computed example, the derivatives, the batched Newton
fit against scipy's L-BFGS-B, degenerate bootstrap replicates, a simulated tournament."""

import math

import numpy as np
import pytest
from scipy.optimize import approx_fprime, check_grad, minimize

from vlarena.arena.ranking import (
    ETA_BOUNDS,
    Design,
    PairCounts,
    Vote,
    fit,
    leaderboard,
    objective,
    online_elo,
    to_rating,
)

RIDGE = 1e-4


def votes_of(model_a: str, model_b: str, a: int, b: int, tie: int, both_bad: int = 0) -> list[Vote]:
    return (
        [Vote(model_a, model_b, "a")] * a
        + [Vote(model_a, model_b, "b")] * b
        + [Vote(model_a, model_b, "tie")] * tie
        + [Vote(model_a, model_b, "both_bad")] * both_bad
    )


def test_two_models_match_the_hand_computed_fit() -> None:
    # A beat B 6 times, lost twice, tied twice (once as both-bad). Two parameters, three cells:
    # the fit reproduces the frequencies, so P(A)/P(B) = 3 = e^(θA-θB) and
    # P(tie)/P(B) = 1 = nu·sqrt(3), i.e. nu = 1/sqrt(3); ratings 1000 ± 200·log10(3).
    board = leaderboard(votes_of("A", "B", 6, 2, 1, 1), rounds=200, ridge=0.0)
    top, bottom = board.ratings
    assert (top.model, bottom.model) == ("A", "B")
    assert top.rating == pytest.approx(1000 + 200 * math.log10(3), abs=1e-3)
    assert bottom.rating == pytest.approx(1000 - 200 * math.log10(3), abs=1e-3)
    assert board.tie_parameter == pytest.approx(1 / math.sqrt(3), rel=1e-4)
    assert (top.wins, top.ties, top.losses) == (6, 2, 2)
    assert top.ci_low < top.rating < top.ci_high
    assert top.rank == bottom.rank == 1  # ten votes: the intervals overlap
    assert board.votes == 10


def test_sides_do_not_matter_and_a_cycle_is_a_draw() -> None:
    swapped = [
        Vote(v.model_b, v.model_a, {"a": "b", "b": "a"}.get(v.choice, v.choice))
        for v in votes_of("A", "B", 6, 2, 2)
    ]
    assert leaderboard(swapped, rounds=10).ratings[0].rating == pytest.approx(
        leaderboard(votes_of("A", "B", 6, 2, 2), rounds=10).ratings[0].rating
    )
    cycle = votes_of("A", "B", 2, 1, 1) + votes_of("B", "C", 2, 1, 1) + votes_of("C", "A", 2, 1, 1)
    ratings = [r.rating for r in leaderboard(cycle, rounds=10).ratings]
    assert ratings == pytest.approx([1000.0] * 3, abs=1e-3)


def random_votes(models: int, n: int, rng: np.random.Generator) -> list[Vote]:
    names = [f"m{k}" for k in range(models)]
    votes = []
    for _ in range(n):
        a, b = rng.choice(names, 2, replace=False)
        votes.append(Vote(str(a), str(b), str(rng.choice(["a", "b", "tie", "both_bad"]))))
    return votes


def test_objective_is_the_davidson_likelihood_with_its_derivatives() -> None:
    rng = np.random.default_rng(0)
    votes = random_votes(4, 200, rng)
    pairs = PairCounts.from_votes(votes)
    design = Design.of(pairs)

    def value(x: np.ndarray) -> float:
        return float(objective(x[None], design, pairs.counts[None], 1e-3)[0][0])

    def grad(x: np.ndarray) -> np.ndarray:
        return objective(x[None], design, pairs.counts[None], 1e-3)[1][0]

    for _ in range(5):
        x = rng.normal(size=len(pairs.models) + 1)
        theta = dict(zip(pairs.models, x[:-1], strict=True))
        loglik = 0.0
        for vote in votes:
            ta, tb = theta[vote.model_a], theta[vote.model_b]
            tie = x[-1] + (ta + tb) / 2
            logit = {"a": ta, "b": tb}.get(vote.choice, tie)
            loglik += logit - np.logaddexp.reduce([ta, tb, tie])
        assert value(x) == pytest.approx(-loglik + 1e-3 * x[:-1] @ x[:-1], rel=1e-12)
        assert check_grad(value, grad, x) < 1e-4
        numeric = np.array([approx_fprime(x, lambda y, k=k: grad(y)[k]) for k in range(len(x))])
        hess = objective(x[None], design, pairs.counts[None], 1e-3)[2][0]
        assert hess == pytest.approx(numeric, abs=1e-4)


def scipy_fit(pairs: PairCounts, counts: np.ndarray, start: np.ndarray) -> np.ndarray:
    """The reference: one L-BFGS-B fit of (θ centred, η), as before batching but run on to a
    gradient of 1e-9 (its old ftol stopped it at gradients of 1e-4 on thousands of votes)."""
    design = Design.of(pairs)

    def nll(x: np.ndarray) -> tuple[float, np.ndarray]:
        value, grad, _ = objective(x[None], design, counts[None], RIDGE)
        return float(value[0]), grad[0]

    bounds = [(None, None)] * len(pairs.models) + [ETA_BOUNDS]
    options = {"maxiter": 1000, "ftol": 0.0, "gtol": 1e-9}
    x = minimize(nll, start, jac=True, method="L-BFGS-B", bounds=bounds, options=options).x
    return np.append(x[:-1] - x[:-1].mean(), x[-1])


@pytest.mark.parametrize(("models", "n"), [(2, 20), (4, 300), (8, 1000), (8, 5000)])
def test_the_newton_fit_matches_scipy_on_random_tournaments(models: int, n: int) -> None:
    rng = np.random.default_rng(models * n)
    for _ in range(3):
        pairs = PairCounts.from_votes(random_votes(models, n, rng))
        theta, nu = fit(pairs)
        reference = scipy_fit(pairs, pairs.counts, np.zeros(models + 1))
        assert theta[0] == pytest.approx(reference[:-1], abs=1e-6)
        assert math.log(nu[0]) == pytest.approx(reference[-1], abs=1e-5)


def test_the_batched_bootstrap_matches_one_scipy_fit_per_replicate() -> None:
    votes = simulate(np.array([-0.6, 0.0, 0.2, 0.7]), 0.4, 300, np.random.default_rng(3))
    rounds = 100
    board = leaderboard(votes, rounds=rounds, seed=5)
    pairs = PairCounts.from_votes(votes)
    theta, nu = fit(pairs)
    flat = pairs.counts.ravel()
    draws = np.random.default_rng(5).multinomial(len(votes), flat / len(votes), size=rounds)
    counts = draws.reshape(rounds, -1, 3).astype(np.float64)
    start = np.append(theta[0], math.log(nu[0]))
    batched = fit(pairs, counts, start)[0]
    reference = np.array([scipy_fit(pairs, c, start)[:-1] for c in counts])
    assert batched == pytest.approx(reference, abs=1e-5)
    low, high = to_rating(np.percentile(reference, [2.5, 97.5], axis=0))
    rows = {r.model: r for r in board.ratings}
    for k, model in enumerate(pairs.models):
        assert (rows[model].ci_low, rows[model].ci_high) == pytest.approx(
            (low[k], high[k]), abs=1e-3
        )


def test_degenerate_replicates_reach_the_bounded_optimum() -> None:
    # Pairs (A,B), (A,C), (B,C), (C,D). Replicates: D absent; A never lost; no ties at all.
    votes = votes_of("A", "B", 3, 2, 1) + votes_of("A", "C", 2, 2, 2)
    votes += votes_of("B", "C", 2, 1, 1) + votes_of("C", "D", 1, 1, 1)
    pairs = PairCounts.from_votes(votes)
    counts = np.stack(
        [
            [[3, 2, 1], [2, 2, 2], [2, 1, 1], [0, 0, 0]],
            [[5, 0, 1], [4, 0, 2], [2, 1, 1], [1, 1, 1]],
            [[3, 2, 0], [2, 2, 0], [2, 1, 0], [1, 1, 0]],
        ]
    ).astype(np.float64)
    theta, nu = fit(pairs, counts, np.zeros(5))
    assert np.isfinite(theta).all()
    x = np.column_stack([theta, np.log(nu)])
    value, grad, _ = objective(x, Design.of(pairs), counts, RIDGE)
    for k, row in enumerate(counts):  # no worse than scipy fitting each replicate alone
        reference = scipy_fit(pairs, row, np.zeros(5))
        best = objective(reference[None], Design.of(pairs), row[None], RIDGE)[0][0]
        assert value[k] <= best + 1e-12
    assert np.abs(grad[:, :-1]).max() < 1e-7  # stationary in θ: the ridge holds D and A
    assert grad[2, -1] > 0  # no ties: η pinned at its lower bound, the gradient pushing down
    assert nu[2] == pytest.approx(math.exp(ETA_BOUNDS[0]))
    assert np.abs(grad[:2, -1]).max() < 1e-7
    assert theta[1, 0] - theta[1, 1] > 3  # A never lost: far ahead, yet finite


def simulate(theta: np.ndarray, nu: float, n: int, rng: np.random.Generator) -> list[Vote]:
    """A tournament between models m0..mK with known strengths, random pairs and sides."""
    votes = []
    for _ in range(n):
        i, j = rng.choice(len(theta), 2, replace=False)
        weights = np.array(
            [math.exp(theta[i]), math.exp(theta[j]), nu * math.exp((theta[i] + theta[j]) / 2)]
        )
        outcome = rng.choice(["a", "b", "tie"], p=weights / weights.sum())
        votes.append(Vote(f"m{i}", f"m{j}", str(outcome)))
    return votes


def test_a_simulated_tournament_recovers_order_and_covers_the_truth() -> None:
    truth = np.array([-1.0, -0.3, 0.2, 1.1])
    truth_ratings = dict(
        zip([f"m{k}" for k in range(4)], to_rating(truth - truth.mean()), strict=True)
    )
    rng = np.random.default_rng(7)
    covered = total = 0
    for trial in range(25):
        board = leaderboard(simulate(truth, 0.4, 400, rng), rounds=200, seed=trial)
        if trial == 0:
            assert [r.model for r in board.ratings] == ["m3", "m2", "m1", "m0"]
            assert board.tie_parameter == pytest.approx(0.4, abs=0.15)
        for row in board.ratings:
            covered += row.ci_low <= truth_ratings[row.model] <= row.ci_high
            total += 1
    assert covered / total >= 0.85  # nominal 95%; 100 intervals


def test_ranks_come_from_non_overlapping_intervals() -> None:
    votes = votes_of("strong", "weak", 90, 10, 10) + votes_of("strong", "weak2", 85, 15, 10)
    votes += votes_of("weak", "weak2", 50, 50, 10)
    board = leaderboard(votes, rounds=300)
    ranks = {r.model: r.rank for r in board.ratings}
    assert ranks == {"strong": 1, "weak": 2, "weak2": 2}


def test_no_ties_and_perfect_separation_stay_finite() -> None:
    board = leaderboard(votes_of("A", "B", 5, 0, 0), rounds=50)
    assert all(math.isfinite(r.rating) for r in board.ratings)
    assert board.ratings[0].model == "A"
    theta, nu = fit(PairCounts.from_votes(votes_of("A", "B", 5, 5, 0)))
    assert nu[0] < 1e-4
    assert theta[0] == pytest.approx([0.0, 0.0], abs=1e-6)


def test_bad_votes_and_empty_boards() -> None:
    with pytest.raises(ValueError, match="choice"):
        Vote("A", "B", "draw")
    with pytest.raises(ValueError, match="itself"):
        Vote("A", "A", "a")
    assert leaderboard([]).ratings == []


def test_online_elo_moves_towards_the_winner() -> None:
    elo = online_elo(votes_of("A", "B", 3, 0, 1))
    assert elo["A"] > 1000 > elo["B"]
    assert elo["A"] + elo["B"] == pytest.approx(2000)
