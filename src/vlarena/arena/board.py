"""The leaderboard: ratings, sim success and vote/sim agreement, cached and refitted."""

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import numpy as np
from sqlalchemy.ext.asyncio import async_sessionmaker

from vlarena.arena.ranking import Leaderboard, PairCounts, Vote, leaderboard, online_elo
from vlarena.arena.schemas import Interval, LeaderboardOut, MatrixOut, RatingOut
from vlarena.arena.storage import results
from vlarena.arena.storage.database import DbSession
from vlarena.arena.storage.results import BoardFilter
from vlarena.arena.storage.tables import utcnow
from vlarena.errors import UnknownNameError
from vlarena.stats import wilson_interval

log = logging.getLogger(__name__)
BACKGROUND_FIT_VOTES = 1000  # from this many votes on: refreshed in the background
OVERALL = BoardFilter()
ALL = ""  # the key of the agreement over every model


def interval(successes: int, trials: int) -> Interval:
    low, high = wilson_interval(successes, trials)
    return Interval(
        value=successes / trials if trials else None, ci_low=low, ci_high=high, n=trials
    )


@dataclass(frozen=True)
class _Cached:
    at: float  # time.monotonic() when computed
    votes: int  # votes then (all boards): everything shown comes from voted battles only
    board: LeaderboardOut
    fit: Leaderboard  # what it was made from (its covariance guides the pair draw)


def fit_board(
    votes: list[Vote], rounds: int, provisional_votes: int
) -> tuple[Leaderboard, dict[str, float]]:
    """Bradley-Terry with its intervals, and the online Elo preview (on the board's worker)."""
    return leaderboard(votes, rounds, provisional_votes=provisional_votes), online_elo(votes)


class Board:
    """The leaderboard, overall or filtered by task kind and scene, from voted battles only
    (open ones would give their models away).

    Each filter's board is cached. One younger than `ttl_s` is served without touching the
    database. An older one is checked against the vote count; if it moved, a small board
    (fitted in milliseconds) is recomputed at once, and a large one is still served while one
    background recompute runs (with `ttl_s` = 0 every change is waited for). One computation
    runs at a time, and its fit runs on the board's one long-lived worker thread, never on the
    event loop (the vectorized bootstrap takes tens of milliseconds at 10,000 votes).
    """

    def __init__(
        self,
        db: async_sessionmaker[DbSession],
        rounds: int,
        ttl_s: float,
        scene_ids: tuple[str, ...],
        provisional_votes: int,
    ) -> None:
        self.db = db
        self.rounds = rounds
        self.ttl_s = ttl_s
        self.scene_ids = scene_ids
        self.provisional_votes = provisional_votes
        self._cached: dict[BoardFilter, _Cached] = {}
        self._lock = asyncio.Lock()
        self._refresh: dict[BoardFilter, asyncio.Task[None]] = {}
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="leaderboard-fit")

    async def get(self, where: BoardFilter = OVERALL) -> LeaderboardOut:
        if where.scene is not None and where.scene not in self.scene_ids:
            raise UnknownNameError("scene", where.scene, self.scene_ids)
        cached = self._cached.get(where)
        if cached is not None and time.monotonic() - cached.at < self.ttl_s:
            return cached.board  # fresh enough: no database work at all
        async with self.db() as s:
            votes = await results.vote_count(s)
            if cached is None and where.task is not None:  # only boards of played kinds
                kinds = await results.task_kinds(s)
                if where.task not in kinds:
                    raise UnknownNameError("task kind", where.task, kinds)
        if cached is not None:
            if cached.votes == votes:
                if self._cached.get(where) is cached:  # a refresh may have landed: keep it
                    self._cached[where] = replace(cached, at=time.monotonic())
                return cached.board
            if self.ttl_s > 0 and votes >= BACKGROUND_FIT_VOTES:  # queries and fit: not inline
                refresh = self._refresh.get(where)
                if refresh is None or refresh.done():
                    loop = asyncio.get_running_loop()
                    self._refresh[where] = loop.create_task(self._recompute(where))
                return cached.board
        await self._recompute(where, votes)
        return self._cached[where].board

    async def fit(self) -> Leaderboard:
        """The overall board's fit, as fresh as `get` makes it."""
        await self.get()
        return self._cached[OVERALL].fit

    async def recompute(self, where: BoardFilter = OVERALL) -> LeaderboardOut:
        """Compute now, whatever the cache holds."""
        async with self._lock:
            self._cached[where] = await self._compute(where)
            return self._cached[where].board

    async def close(self) -> None:
        for refresh in self._refresh.values():
            refresh.cancel()
        await asyncio.gather(*self._refresh.values(), return_exceptions=True)
        self._worker.shutdown(wait=False, cancel_futures=True)

    async def _recompute(self, where: BoardFilter, wanted: int | None = None) -> None:
        async with self._lock:  # one computation at a time; waiters reuse its result
            cached = self._cached.get(where)
            if wanted is not None and cached is not None and cached.votes == wanted:
                return
            try:
                self._cached[where] = await self._compute(where)
            except Exception:
                if wanted is not None or cached is None:
                    raise
                log.exception("leaderboard refresh failed; serving the previous one")
                self._cached[where] = replace(cached, at=time.monotonic())  # retry after ttl_s

    async def _compute(self, where: BoardFilter) -> _Cached:
        started = time.perf_counter()
        async with self.db() as s:
            total = await results.vote_count(s)
            votes = await results.votes(s, where)
            success = await results.sim_success(s, where)
            sides = await results.side_successes(s, where)
            kinds = await results.task_kinds(s)
        loop = asyncio.get_running_loop()
        board, elo = await loop.run_in_executor(
            self._worker, fit_board, votes, self.rounds, self.provisional_votes
        )
        agreed = agreement(sides)
        rows = [
            RatingOut(
                model=r.model,
                rating=r.rating,
                ci_low=r.ci_low,
                ci_high=r.ci_high,
                rank=r.rank,
                elo=elo[r.model],
                battles=r.votes,
                wins=r.wins,
                ties=r.ties,
                losses=r.losses,
                sim_success=interval(*success.get(r.model, (0, 0))),
                agreement=interval(*agreed.get(r.model, (0, 0))),
                provisional=r.provisional,
            )
            for r in board.ratings
        ]
        return _Cached(
            time.monotonic(),
            total,
            LeaderboardOut(
                task=where.task,
                scene=where.scene,
                task_kinds=kinds,
                scene_ids=list(self.scene_ids),
                provisional_votes=self.provisional_votes,
                ratings=rows,
                matrix=matrix([r.model for r in rows], votes),
                votes=board.votes,
                tie_parameter=board.tie_parameter if board.votes else None,
                bootstrap_rounds=self.rounds,
                agreement=interval(*agreed.get(ALL, (0, 0))),
                computed_at=utcnow(),
                compute_ms=(time.perf_counter() - started) * 1000,
            ),
            board,
        )


def agreement(
    battles: dict[str, tuple[str, str, str, dict[str, int]]],
) -> dict[str, tuple[int, int]]:
    """Among a/b votes where one side had more sim successes: votes for that side, and all;
    per model and over all models (`ALL`)."""
    counts: dict[str, list[int]] = {}
    for model_a, model_b, choice, wins in battles.values():
        a, b = wins.get("a", 0), wins.get("b", 0)
        if a == b:
            continue
        agreed = choice == ("a" if a > b else "b")
        for key in (ALL, model_a, model_b):
            tally = counts.setdefault(key, [0, 0])
            tally[0] += agreed
            tally[1] += 1
    return {key: (agree, decided) for key, (agree, decided) in counts.items()}


def matrix(models: list[str], votes: list[Vote]) -> MatrixOut:
    """Battles and win rates (ties count half) of each row model against each column model,
    from the votes per pair the fit counts (`PairCounts`)."""
    pairs = PairCounts.from_votes(votes)
    at = np.array([models.index(m) for m in pairs.models], dtype=np.intp)
    i, j = at[pairs.i], at[pairs.j]
    won_i, won_j, tie = pairs.counts.T
    battles = np.zeros((len(models), len(models)))
    score = np.zeros_like(battles)
    battles[i, j] = battles[j, i] = won_i + won_j + tie
    score[i, j], score[j, i] = won_i + tie / 2, won_j + tie / 2
    rate = np.divide(score, battles, out=np.full_like(score, np.nan), where=battles > 0)
    return MatrixOut(
        models=models,
        battles=battles.astype(int).tolist(),
        win_rate=[[None if np.isnan(r) else float(r) for r in row] for row in rate],
    )
