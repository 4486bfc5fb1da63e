"""The leaderboard: ratings, sim success and vote/sim agreement, cached and refitted."""

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

from sqlalchemy.ext.asyncio import async_sessionmaker

from vlarena.arena.ranking import Leaderboard, Vote, leaderboard, online_elo
from vlarena.arena.schemas import Interval, LeaderboardOut, RatingOut
from vlarena.arena.storage import results
from vlarena.arena.storage.database import DbSession
from vlarena.arena.storage.tables import utcnow
from vlarena.stats import wilson_interval

log = logging.getLogger(__name__)
BACKGROUND_FIT_VOTES = 1000  # from this many votes on: refreshed in the background


def interval(successes: int, trials: int) -> Interval:
    low, high = wilson_interval(successes, trials)
    return Interval(
        value=successes / trials if trials else None, ci_low=low, ci_high=high, n=trials
    )


@dataclass(frozen=True)
class _Cached:
    at: float  # time.monotonic() when computed
    votes: int  # votes then: everything shown comes from voted battles only
    board: LeaderboardOut


def fit_board(votes: list[Vote], rounds: int) -> tuple[Leaderboard, dict[str, float]]:
    """Bradley-Terry with bootstrap, and the online Elo preview (runs on the board's worker)."""
    return leaderboard(votes, rounds), online_elo(votes)


class Board:
    """The leaderboard, from voted battles only (open ones would give their models away).

    A board younger than `ttl_s` is served without touching the database. An older one is
    checked against the vote count; if it moved, a small board (fitted in milliseconds) is
    recomputed at once, and a large one is still served while one background recompute runs
    (with `ttl_s` = 0 every change is waited for). One computation runs at a time, and its fit
    runs on the board's one long-lived worker thread, never on the event loop (the vectorized
    bootstrap takes tens of milliseconds at 10,000 votes).
    """

    def __init__(self, db: async_sessionmaker[DbSession], rounds: int, ttl_s: float) -> None:
        self.db = db
        self.rounds = rounds
        self.ttl_s = ttl_s
        self._cached: _Cached | None = None
        self._lock = asyncio.Lock()
        self._refresh: asyncio.Task[None] | None = None
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="leaderboard-fit")

    async def get(self) -> LeaderboardOut:
        cached = self._cached
        if cached is not None and time.monotonic() - cached.at < self.ttl_s:
            return cached.board  # fresh enough: no database work at all
        async with self.db() as s:
            votes = await results.vote_count(s)
        if cached is not None:
            if cached.votes == votes:
                if self._cached is cached:  # a refresh may have landed meanwhile: keep it
                    self._cached = replace(cached, at=time.monotonic())
                return cached.board
            if self.ttl_s > 0 and votes >= BACKGROUND_FIT_VOTES:  # queries and fit: not inline
                if self._refresh is None or self._refresh.done():
                    self._refresh = asyncio.get_running_loop().create_task(self._recompute())
                return cached.board
        await self._recompute(votes)
        assert self._cached is not None
        return self._cached.board

    async def recompute(self) -> LeaderboardOut:
        """Compute now, whatever the cache holds."""
        async with self._lock:
            self._cached = await self._compute()
            return self._cached.board

    async def close(self) -> None:
        if self._refresh is not None:
            self._refresh.cancel()
            await asyncio.gather(self._refresh, return_exceptions=True)
        self._worker.shutdown(wait=False, cancel_futures=True)

    async def _recompute(self, wanted: int | None = None) -> None:
        async with self._lock:  # one computation at a time; waiters reuse its result
            cached = self._cached
            if wanted is not None and cached is not None and cached.votes == wanted:
                return
            try:
                self._cached = await self._compute()
            except Exception:
                if wanted is not None or cached is None:
                    raise
                log.exception("leaderboard refresh failed; serving the previous one")
                self._cached = replace(cached, at=time.monotonic())  # retry after ttl_s

    async def _compute(self) -> _Cached:
        started = time.perf_counter()
        async with self.db() as s:
            votes = await results.votes(s)
            success = await results.sim_success(s)
            agree, decided = agreement(await results.side_successes(s))
        loop = asyncio.get_running_loop()
        board, elo = await loop.run_in_executor(self._worker, fit_board, votes, self.rounds)
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
            )
            for r in board.ratings
        ]
        return _Cached(
            time.monotonic(),
            len(votes),
            LeaderboardOut(
                ratings=rows,
                votes=board.votes,
                tie_parameter=board.tie_parameter if board.votes else None,
                bootstrap_rounds=self.rounds,
                agreement=interval(agree, decided),
                computed_at=utcnow(),
                compute_ms=(time.perf_counter() - started) * 1000,
            ),
        )


def agreement(battles: dict[str, tuple[str, dict[str, int]]]) -> tuple[int, int]:
    """Among a/b votes where one side had more sim successes: votes for that side, and all."""
    agree = decided = 0
    for choice, wins in battles.values():
        a, b = wins.get("a", 0), wins.get("b", 0)
        if a != b:
            decided += 1
            agree += choice == ("a" if a > b else "b")
    return agree, decided
