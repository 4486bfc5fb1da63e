"""Leaderboard fit time (point estimate and bootstrap) and the event loop's lag meanwhile; the
cost of drawing a battle's pair from a fitted board."""

import asyncio
import random
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import numpy as np
from rich.progress import Progress

from benchmarks.arena import MODELS, STRENGTH, tournament
from benchmarks.common import time_calls
from vlarena.arena.pairing import draw_pair, pair_probabilities
from vlarena.arena.ranking import Leaderboard, PairCounts, Vote, fit, leaderboard

VOTES = (10, 1_000, 10_000)
ROUNDS = 1000


def _point_estimate(votes: list[Vote]) -> tuple[np.ndarray, np.ndarray]:
    return fit(PairCounts.from_votes(votes))


def _draw(board: Leaderboard, rng: random.Random) -> tuple[str, str]:
    return draw_pair(rng, pair_probabilities(MODELS, board))


async def _loop_lag_ms(votes: list[Vote], fits: int) -> float:
    """The longest gap between ticks of a 1 ms timer while `fits` fits run on a worker thread."""
    loop = asyncio.get_running_loop()
    gaps: list[float] = []
    with ThreadPoolExecutor(1) as worker:
        for _ in range(fits):
            fit = loop.run_in_executor(worker, leaderboard, votes, ROUNDS)
            last = time.perf_counter()
            while not fit.done():
                await asyncio.sleep(0.001)
                now = time.perf_counter()
                gaps.append((now - last) * 1000.0)
                last = now
            await fit
    return max(gaps) - 1.0


def run(samples: int, progress: Progress) -> str:
    """Markdown section: `leaderboard()` wall time at 10 to 10,000 votes."""
    rows = []
    task = progress.add_task("leaderboard", total=len(VOTES))
    for n in VOTES:
        votes = [Vote(a, b, c) for a, b, c in tournament(n, random.Random(n))]
        point = time_calls(partial(_point_estimate, votes), samples)
        full = time_calls(partial(leaderboard, votes, ROUNDS), samples)
        lag = asyncio.run(_loop_lag_ms(votes, min(samples, 10)))
        board = leaderboard(votes, ROUNDS)
        ranked = [r.model for r in board.ratings]
        recovered = "yes" if ranked == sorted(MODELS, key=lambda m: -STRENGTH[m]) else "no"
        draw = time_calls(partial(_draw, board, random.Random(0)), samples)
        rows.append(
            f"| {n:,} | {point.p50:.1f} | {full.p50:.1f} | {full.p99:.1f} | {lag:.1f} "
            f"| {draw.p50:.2f} | {recovered} |"
        )
        progress.advance(task)
    return "\n".join(
        [
            "## Leaderboard fit",
            "",
            f"`leaderboard()` on a simulated tournament of {len(MODELS)} models (Davidson, "
            f"nu = 0.3): votes aggregated per pair, the fit at the posterior mode (weak prior) "
            f"with its Laplace intervals, then {ROUNDS} multinomial bootstrap replicates fitted "
            "together (batched Newton over a (replicates, models + 1) array), "
            f"{samples} calls after 3 warm-up calls. Loop lag: the longest stall of a 1 ms "
            "asyncio timer beyond its period while the full fit runs on a worker thread, as the "
            "arena runs it. Pair draw: `pair_probabilities` and `draw_pair` on that board, what "
            "each new battle costs. Order recovered: the ratings rank the models as their "
            "simulated strengths do.",
            "",
            "| votes | point estimate p50 ms | with bootstrap p50 ms | p99 ms | loop lag max ms "
            "| pair draw p50 ms | order recovered |",
            "|---:|---:|---:|---:|---:|---:|---|",
            *rows,
        ]
    )
