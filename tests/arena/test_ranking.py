"""Bradley-Terry-Davidson ratings: a hand-computed example, the gradient, a simulated tournament."""

import math

import numpy as np
import pytest
from scipy.optimize import check_grad

from vlarena.arena.ranking import (
    PairCounts,
    Vote,
    _nll,
    fit,
    leaderboard,
    online_elo,
    to_rating,
)


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


def test_gradient_matches_finite_differences() -> None:
    rng = np.random.default_rng(0)
    votes = []
    for _ in range(200):
        a, b = rng.choice(["A", "B", "C", "D"], 2, replace=False)
        votes.append(Vote(str(a), str(b), str(rng.choice(["a", "b", "tie", "both_bad"]))))
    pairs = PairCounts.from_votes(votes)
    for _ in range(5):
        x = rng.normal(size=len(pairs.models) + 1)
        error = check_grad(
            lambda p: _nll(p, pairs, pairs.counts, 1e-3)[0],
            lambda p: _nll(p, pairs, pairs.counts, 1e-3)[1],
            x,
        )
        assert error < 1e-4


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
    assert nu < 1e-4
    assert theta == pytest.approx([0.0, 0.0], abs=1e-6)


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
