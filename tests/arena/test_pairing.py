"""Pair sampling: the floor, unknown models, the two-model case, and a seeded simulation in which
active sampling narrows the intervals in fewer votes than uniform drawing."""

import random

import numpy as np
import pytest

from vlarena.arena.pairing import (
    EXPLORATION_FLOOR,
    MAX_SHARE_RATIO,
    draw_pair,
    pair_probabilities,
    simulate,
    votes_to_width,
)
from vlarena.arena.ranking import PairCounts, Vote, leaderboard, rate


def votes_of(model_a: str, model_b: str, a: int, b: int, tie: int) -> list[Vote]:
    return (
        [Vote(model_a, model_b, "a")] * a
        + [Vote(model_a, model_b, "b")] * b
        + [Vote(model_a, model_b, "tie")] * tie
    )


VOTES = (
    votes_of("A", "B", 60, 30, 20)
    + votes_of("A", "C", 80, 10, 10)
    + votes_of("B", "C", 50, 30, 20)
    + votes_of("C", "D", 2, 1, 0)
)


def test_probabilities_sum_to_one_and_every_pair_keeps_the_floor() -> None:
    board = leaderboard(VOTES, rounds=0)
    for floor in (EXPLORATION_FLOOR, 0.5, 1.0):
        probabilities = pair_probabilities(["A", "B", "C", "D"], board, floor)
        assert len(probabilities) == 6
        assert sum(probabilities.values()) == pytest.approx(1.0)
        assert min(probabilities.values()) >= floor / 6 - 1e-12
    assert list(probabilities.values()) == pytest.approx([1 / 6] * 6)  # all floor: uniform
    probabilities = pair_probabilities(["A", "B", "C", "D"], board)
    assert sum(p for pair, p in probabilities.items() if "D" in pair) > 0.8  # D: three votes


def test_models_without_votes_are_drawn_first() -> None:
    board = leaderboard(VOTES, rounds=0)
    probabilities = pair_probabilities(["A", "B", "C", "D", "E"], board)
    with_e = sum(p for pair, p in probabilities.items() if "E" in pair)
    assert with_e > 0.6  # 4 of 10 pairs, most of the mass
    rng = random.Random(0)
    draws = [draw_pair(rng, probabilities) for _ in range(1000)]
    assert sum("E" in pair for pair in draws) > 550
    assert {("A", "E"), ("E", "A")} <= set(draws)  # both sides
    # Absent from the board is the same as on it without votes: the prior either way.
    on_board = PairCounts.from_votes(VOTES)
    with_zero = PairCounts([*on_board.models, "E"], on_board.i, on_board.j, on_board.counts)
    same = pair_probabilities(["A", "B", "C", "D", "E"], rate(with_zero, rounds=0))
    assert same == pytest.approx(probabilities)


def test_boards_without_votes_and_models_off_the_list() -> None:
    assert pair_probabilities(["A", "B"], leaderboard(VOTES)) == {("A", "B"): 1.0}
    empty = pair_probabilities(["X", "Y", "Z"], leaderboard([]))
    assert empty == {pair: pytest.approx(1 / 3) for pair in [("X", "Y"), ("X", "Z"), ("Y", "Z")]}
    only = pair_probabilities(["C", "A", "C"], leaderboard(VOTES))  # B, D not served
    assert list(only) == [("C", "A")]
    with pytest.raises(ValueError, match="two models"):
        pair_probabilities(["A"], leaderboard(VOTES))


def test_draw_pair_follows_the_probabilities_in_random_order() -> None:
    rng = random.Random(1)
    draws = [draw_pair(rng, {("A", "B"): 0.9, ("A", "C"): 0.1}) for _ in range(2000)]
    assert sum(set(d) == {"A", "B"} for d in draws) == pytest.approx(1800, abs=60)
    assert sum(d[0] == "A" for d in draws) == pytest.approx(1000, abs=90)


def test_active_sampling_narrows_a_newcomer_in_fewer_votes() -> None:
    # Five models with 300 votes between them; a sixth joins. Votes after it joined until the
    # mean 95% width (over all six) is back to 130 points: active needs at least 25% fewer.
    ratings = {"m0": 1250.0, "m1": 1100.0, "m2": 1000.0, "m3": 900.0, "m4": 750.0, "new": 1050.0}
    after = {}
    for strategy in ("active", "uniform"):
        needed = []
        for seed in range(3):
            widths = simulate(strategy, ratings, 500, seed, joins={"new": 300})
            reached = votes_to_width([w for w in widths if w[0] > 300], 130.0)
            assert reached is not None
            needed.append(reached - 300)
        after[strategy] = float(np.mean(needed))
    assert after["active"] <= 0.75 * after["uniform"]


def test_no_model_plays_more_than_twice_its_uniform_share() -> None:
    known = [Vote(a, b, "a") for a, b in [("A", "B"), ("B", "C"), ("C", "D"), ("D", "E")] * 30]
    models = ["A", "B", "C", "D", "E", "new"]
    probabilities = pair_probabilities(models, leaderboard(known, rounds=0))
    plays = sum(p for pair, p in probabilities.items() if "new" in pair)
    assert plays == pytest.approx(MAX_SHARE_RATIO * 2 / 6)  # mixed towards uniform just enough
    assert sum(probabilities.values()) == pytest.approx(1.0)
    assert min(probabilities.values()) >= EXPLORATION_FLOOR / 15
