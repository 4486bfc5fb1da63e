"""Bradley-Terry-Davidson ratings: a hand-computed example, the derivatives, the batched Newton
fit against scipy's L-BFGS-B, degenerate bootstrap replicates, the intervals' coverage in
simulated tournaments from 5 to 1000 votes per pair, provisional flags and the rank rule."""

import math
from itertools import combinations

import numpy as np
import pytest
from scipy.optimize import approx_fprime, check_grad, minimize

from vlarena.arena.ranking import (
    ETA_BOUNDS,
    PRIOR_SD,
    SCALE,
    Design,
    PairCounts,
    Vote,
    fit,
    laplace_covariance,
    leaderboard,
    objective,
    online_elo,
    rate,
    ridge_of,
    to_rating,
)

RIDGE = ridge_of(PRIOR_SD)
Z95 = 1.959964


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
    # P(tie)/P(B) = 1 = nu·sqrt(3), i.e. nu = 1/sqrt(3); ratings 1000 ± 200·log10(3). This is
    # the maximum-likelihood fit: an infinite prior sd.
    board = leaderboard(votes_of("A", "B", 6, 2, 1, 1), rounds=200, prior_sd=math.inf)
    top, bottom = board.ratings
    assert (top.model, bottom.model) == ("A", "B")
    assert top.rating == pytest.approx(1000 + 200 * math.log10(3), abs=1e-3)
    assert bottom.rating == pytest.approx(1000 - 200 * math.log10(3), abs=1e-3)
    assert board.tie_parameter == pytest.approx(1 / math.sqrt(3), rel=1e-4)
    assert (top.wins, top.ties, top.losses) == (6, 2, 2)
    assert top.ci_low < top.rating < top.ci_high
    assert top.rank == bottom.rank == 1  # ten votes: the intervals overlap
    assert board.votes == 10
    # The Laplace sd of the centred rating θA - (θA + θB)/2 = d/2: the observed information
    # about d = θA - θB with η free is that of the three frequencies (0.6, 0.2, 0.2).
    prior = leaderboard(votes_of("A", "B", 6, 2, 1, 1), rounds=200).ratings[0]
    assert 1000 < prior.rating < top.rating  # the prior pulls the MAP towards the middle


def test_the_laplace_covariance_is_the_inverse_hessian() -> None:
    votes = simulate(np.array([-0.6, 0.0, 0.2, 0.7]), 0.4, 200, np.random.default_rng(2))
    pairs = PairCounts.from_votes(votes)
    theta, nu = fit(pairs)
    x = np.append(theta[0], math.log(nu[0]))
    hess = objective(x[None], Design.of(pairs), pairs.counts[None], RIDGE)[2][0]
    centre = np.eye(5)
    centre[:4, :4] -= 1 / 4
    expected = (centre @ np.linalg.inv(hess) @ centre)[:4, :4]  # the prior makes it invertible
    covariance = laplace_covariance(pairs, theta[0], float(nu[0]))
    assert covariance == pytest.approx(expected, abs=1e-12)
    board = leaderboard(votes, rounds=0)
    rows = {r.model: r for r in board.ratings}
    for k, model in enumerate(pairs.models):
        sd = SCALE * math.sqrt(covariance[k, k])
        assert rows[model].sd == pytest.approx(sd)
        low, high = rows[model].rating - Z95 * sd, rows[model].rating + Z95 * sd
        assert (rows[model].ci_low, rows[model].ci_high) == pytest.approx((low, high))
    order = [pairs.models.index(r.model) for r in board.ratings]
    assert board.covariance == pytest.approx(SCALE**2 * covariance[np.ix_(order, order)])
    # Without ties η is pinned at its bound and left out: the θ block alone, inverted.
    pairs = PairCounts.from_votes(votes_of("A", "B", 3, 1, 0) + votes_of("B", "C", 2, 2, 0))
    theta, nu = fit(pairs)
    hess = objective(
        np.append(theta[0], ETA_BOUNDS[0])[None], Design.of(pairs), pairs.counts[None], RIDGE
    )[2][0]
    centre = np.eye(3) - 1 / 3
    expected = centre @ np.linalg.inv(hess[:3, :3]) @ centre
    assert laplace_covariance(pairs, theta[0], float(nu[0])) == pytest.approx(expected, abs=1e-12)


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
    for k, model in enumerate(pairs.models):  # the envelope of the bootstrap and Laplace
        row = rows[model]
        laplace = (row.rating - Z95 * row.sd, row.rating + Z95 * row.sd)
        assert (row.ci_low, row.ci_high) == pytest.approx(
            (min(low[k], laplace[0]), max(high[k], laplace[1])), abs=1e-3
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
    assert np.abs(grad[:, :-1]).max() < 1e-7  # stationary in θ: the prior holds D and A
    assert grad[2, -1] > 0  # no ties: η pinned at its lower bound, the gradient pushing down
    assert nu[2] == pytest.approx(math.exp(ETA_BOUNDS[0]))
    assert np.abs(grad[:2, -1]).max() < 1e-7
    assert theta[1, 0] - theta[1, 1] > 1.5  # A never lost: far ahead, yet held by the prior


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


def test_a_simulated_tournament_recovers_order_and_tie_parameter() -> None:
    board = leaderboard(
        simulate(np.array([-1.0, -0.3, 0.2, 1.1]), 0.4, 400, np.random.default_rng(7))
    )
    assert [r.model for r in board.ratings] == ["m3", "m2", "m1", "m0"]
    assert board.tie_parameter == pytest.approx(0.4, abs=0.15)


def tournament(theta: np.ndarray, nu: float, per_pair: int, rng: np.random.Generator) -> PairCounts:
    """`per_pair` votes between every two of the models m0..mK with strengths `theta`."""
    pairs = list(combinations(range(len(theta)), 2))
    i, j = (np.array(side, dtype=np.intp) for side in zip(*pairs, strict=True))
    logits = np.column_stack([theta[i], theta[j], math.log(nu) + (theta[i] + theta[j]) / 2])
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    counts = np.array([rng.multinomial(per_pair, row) for row in p], dtype=np.float64)
    return PairCounts([f"m{k}" for k in range(len(theta))], i, j, counts)


@pytest.mark.parametrize("per_pair", [5, 20, 100, 1000])
def test_the_intervals_cover_the_true_rating(per_pair: int) -> None:
    # 4 models spread over 365 points, ties a fifth of close battles; 40 tournaments per size.
    # Nominal 95%: the envelope measured 96-97% at every size (docs/design/arena-statistics.md).
    truth = np.array([-1.0, -0.3, 0.2, 1.1])
    truth_ratings = to_rating(truth - truth.mean())
    rng = np.random.default_rng(per_pair)
    covered = []
    for trial in range(40):
        board = rate(tournament(truth, 0.3, per_pair, rng), rounds=100, seed=trial)
        rows = {r.model: r for r in board.ratings}
        for k, truth_rating in enumerate(truth_ratings):
            row = rows[f"m{k}"]
            covered.append(row.ci_low <= truth_rating <= row.ci_high)
    assert np.mean(covered) >= 0.9


def test_one_vote_gives_an_interval_hundreds_of_points_wide() -> None:
    board = leaderboard([Vote("vla-ar-small", "vla-flow-small", "a")])
    top, bottom = board.ratings
    assert top.model == "vla-ar-small"
    assert top.ci_low < bottom.rating < top.rating < top.ci_high  # was "1628 - 1628"
    for row in board.ratings:
        assert row.ci_high - row.ci_low > 500
        assert row.provisional
    assert top.rank == bottom.rank == 1
    # Centred, each rating is ± half the difference: its prior sd is PRIOR_SD/sqrt(2).
    assert SCALE * PRIOR_SD / math.sqrt(2) > top.sd > 100


def test_provisional_until_the_stated_number_of_votes() -> None:
    votes = votes_of("A", "B", 10, 5, 4) + votes_of("B", "C", 3, 3, 3)
    rows = {r.model: r for r in leaderboard(votes, rounds=10).ratings}
    assert {m: (r.votes, r.provisional) for m, r in rows.items()} == {
        "A": (19, True),
        "B": (28, False),
        "C": (9, True),
    }
    rows = {r.model: r for r in leaderboard(votes + votes_of("A", "C", 1, 0, 0), rounds=10).ratings}
    assert not rows["A"].provisional  # 20 votes: the default threshold
    rows = {r.model: r for r in leaderboard(votes, rounds=10, provisional_votes=10).ratings}
    assert [rows[m].provisional for m in "ABC"] == [False, False, True]


def test_a_model_without_votes_keeps_its_prior() -> None:
    pairs = PairCounts.from_votes(votes_of("A", "B", 30, 20, 10))
    unseen = PairCounts(["A", "B", "C"], pairs.i, pairs.j, pairs.counts)
    rows = {r.model: r for r in rate(unseen, rounds=50).ratings}
    assert rows["C"].rating == pytest.approx(1000.0, abs=1e-6)
    assert rows["C"].votes == 0
    assert rows["C"].provisional
    # θC - mean θ = (2/3)θC - (θA + θB)/3: the votes say nothing about θC or θA + θB, so its
    # variance is the prior's, (4/9 + 2/9) PRIOR_SD², as for a model of three without votes.
    assert rows["C"].sd == pytest.approx(SCALE * PRIOR_SD * math.sqrt(2 / 3))


def test_ranks_come_from_non_overlapping_intervals() -> None:
    votes = votes_of("strong", "weak", 90, 10, 10) + votes_of("strong", "weak2", 85, 15, 10)
    votes += votes_of("weak", "weak2", 50, 50, 10)
    board = leaderboard(votes, rounds=300)
    ranks = {r.model: r.rank for r in board.ratings}
    assert ranks == {"strong": 1, "weak": 2, "weak2": 2}
    board = rate(
        tournament(np.array([-1.5, -0.3, 0.0, 0.2, 1.5]), 0.3, 40, np.random.default_rng(1))
    )
    for row in board.ratings:
        above = sum(other.ci_low > row.ci_high for other in board.ratings)
        assert row.rank == 1 + above
    assert [r.rank for r in board.ratings] == sorted(r.rank for r in board.ratings)
    assert len({r.rank for r in board.ratings}) > 1


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
