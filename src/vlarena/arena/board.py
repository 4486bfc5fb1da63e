"""The leaderboard (ratings, sim success, vote/sim agreement) and the JSONL export."""

import asyncio
import json
import logging
import multiprocessing
import time
from collections.abc import AsyncIterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from typing import Any, Literal

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlalchemy.orm import selectinload

from vlarena.arena.ranking import Leaderboard, Vote, leaderboard, online_elo
from vlarena.arena.schemas import Interval, LeaderboardOut, RatingOut
from vlarena.arena.storage.database import DbSession
from vlarena.arena.storage.tables import BattleRow, EpisodeRow, TurnRow, VoteRow, aware, utcnow
from vlarena.stats import wilson_interval

log = logging.getLogger(__name__)
PROCESS_FIT_VOTES = 1000  # from this many votes on: a worker process, refreshed in the background
ExportKind = Literal["battles", "episodes", "votes"]
EXPORT_KINDS: tuple[ExportKind, ...] = ("battles", "episodes", "votes")


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
    """Bradley-Terry with bootstrap, and the online Elo preview (runs off the event loop)."""
    return leaderboard(votes, rounds), online_elo(votes)


class Board:
    """The leaderboard, from voted battles only (open ones would give their models away).

    A board younger than `ttl_s` is served without touching the database. An older one is
    checked against the vote count; if it moved, a small board (fitted in milliseconds) is
    recomputed at once, and a large one is still served while one background recompute runs
    (with `ttl_s` = 0 every change is waited for). Large fits run in a worker process, so the
    bootstrap never stalls the event loop.
    """

    def __init__(self, db: async_sessionmaker[DbSession], rounds: int, ttl_s: float) -> None:
        self.db = db
        self.rounds = rounds
        self.ttl_s = ttl_s
        self._cached: _Cached | None = None
        self._lock = asyncio.Lock()
        self._refresh: asyncio.Task[None] | None = None
        self._pool: ProcessPoolExecutor | None = None

    async def get(self) -> LeaderboardOut:
        cached = self._cached
        if cached is not None and time.monotonic() - cached.at < self.ttl_s:
            return cached.board  # fresh enough: no database work at all
        async with self.db() as s:
            votes = await self._vote_count(s)
        if cached is not None:
            if cached.votes == votes:
                if self._cached is cached:  # a refresh may have landed meanwhile: keep it
                    self._cached = replace(cached, at=time.monotonic())
                return cached.board
            if self.ttl_s > 0 and votes >= PROCESS_FIT_VOTES:  # seconds of work: not inline
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
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

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

    @staticmethod
    async def _vote_count(s: DbSession) -> int:
        return int(await s.scalar(select(func.count()).select_from(VoteRow)) or 0)

    async def _fit(self, votes: list[Vote]) -> tuple[Leaderboard, dict[str, float]]:
        if len(votes) < PROCESS_FIT_VOTES:
            return await asyncio.to_thread(fit_board, votes, self.rounds)
        if self._pool is None:
            self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, fit_board, votes, self.rounds)
        except BrokenProcessPool:
            self._pool = None  # the worker died (e.g. out of memory): start a new one next time
            raise

    async def _compute(self) -> _Cached:
        started = time.perf_counter()
        async with self.db() as s:
            votes = await self._votes(s)
            success = await self._sim_success(s)
            agree, decided = await self._agreement(s)
        board, elo = await self._fit(votes)
        rows = [
            RatingOut(model=r.model, rating=r.rating, ci_low=r.ci_low, ci_high=r.ci_high,
                      rank=r.rank, elo=elo[r.model], battles=r.votes, wins=r.wins, ties=r.ties,
                      losses=r.losses, sim_success=interval(*success.get(r.model, (0, 0))))
            for r in board.ratings
        ]  # fmt: skip
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

    @staticmethod
    async def _votes(s: DbSession) -> list[Vote]:
        rows = await s.execute(
            select(BattleRow.model_a, BattleRow.model_b, VoteRow.choice)
            .join(VoteRow, VoteRow.battle_id == BattleRow.id)
            .order_by(VoteRow.created_at, VoteRow.id)
        )
        return [Vote(a, b, c) for a, b, c in rows]

    @staticmethod
    async def _sim_success(s: DbSession) -> dict[str, tuple[int, int]]:
        """Per model, over voted battles: successful episodes, episodes with a task."""
        rows = await s.execute(
            select(
                EpisodeRow.model_id,
                func.sum(case((EpisodeRow.success.is_(True), 1), else_=0)),
                func.count(),
            )
            .join(TurnRow, EpisodeRow.turn_id == TurnRow.id)
            .join(VoteRow, VoteRow.battle_id == TurnRow.battle_id)
            .where(EpisodeRow.success.is_not(None), TurnRow.status == "done")
            .group_by(EpisodeRow.model_id)
        )
        return {model: (int(wins or 0), int(n)) for model, wins, n in rows}

    @staticmethod
    async def _agreement(s: DbSession) -> tuple[int, int]:
        """Among a/b votes where one side had more sim successes: votes for that side."""
        per_side = (
            select(
                TurnRow.battle_id,
                EpisodeRow.side,
                func.sum(case((EpisodeRow.success.is_(True), 1), else_=0)).label("wins"),
            )
            .join(TurnRow, EpisodeRow.turn_id == TurnRow.id)
            .where(TurnRow.status == "done")
            .group_by(TurnRow.battle_id, EpisodeRow.side)
        ).subquery()
        rows = await s.execute(
            select(VoteRow.battle_id, VoteRow.choice, per_side.c.side, per_side.c.wins)
            .join(per_side, per_side.c.battle_id == VoteRow.battle_id)
            .where(VoteRow.choice.in_(("a", "b")))
        )
        battles: dict[str, tuple[str, dict[str, int]]] = {}
        for battle_id, choice, side, wins in rows:
            battles.setdefault(battle_id, (choice, {}))[1][side] = int(wins or 0)
        agree = decided = 0
        for choice, wins in battles.values():
            a, b = wins.get("a", 0), wins.get("b", 0)
            if a != b:
                decided += 1
                agree += choice == ("a" if a > b else "b")
        return agree, decided

    async def export(self, kind: ExportKind) -> AsyncIterator[str]:
        """Voted battles only (identities of unvoted ones stay hidden), one JSON per line."""
        async with self.db() as s:
            query = (
                select(BattleRow)
                .join(VoteRow, VoteRow.battle_id == BattleRow.id)
                .order_by(VoteRow.created_at, BattleRow.id)
            )
            # Collections load per chunk of 200 battles (joined loading cannot stream).
            episodes = selectinload(BattleRow.turns).selectinload(TurnRow.episodes)
            if kind == "episodes":
                episodes = episodes.undefer(EpisodeRow.data)
            query = query.options(episodes, selectinload(BattleRow.vote))
            async for battle in await s.stream_scalars(query.execution_options(yield_per=200)):
                for record in _records(kind, battle):
                    yield json.dumps(record, separators=(",", ":")) + "\n"


def _records(kind: ExportKind, battle: BattleRow) -> list[dict[str, Any]]:
    vote = battle.vote
    assert vote is not None  # the export joins on votes
    base: dict[str, Any] = {
        "battle_id": battle.id,
        "model_a": battle.model_a,
        "model_b": battle.model_b,
    }
    if kind == "votes":
        return [base | {"choice": vote.choice, "created_at": aware(vote.created_at).isoformat()}]
    if kind == "battles":
        turns = [{"number": t.number, "instruction": t.instruction, "seed": t.seed,
                  "status": t.status, "error": t.error} for t in battle.turns]  # fmt: skip
        return [base | {"scene_id": battle.scene_id, "vote": vote.choice, "turns": turns,
                        "created_at": aware(battle.created_at).isoformat()}]  # fmt: skip
    return [
        {
            "battle_id": battle.id,
            "turn": t.number,
            "side": e.side,
            "model_id": e.model_id,
            "success": e.success,
            "num_steps": e.num_steps,
            "duration_ms": e.duration_ms,
            "episode": e.data,
        }
        for t in battle.turns
        for e in t.episodes
    ]
