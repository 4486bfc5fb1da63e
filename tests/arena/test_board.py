"""The leaderboard's computation: one at a time, on one reused worker, never on the event loop."""

import asyncio
import contextlib
import threading
from typing import cast

import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker

from vlarena.arena import board as board_module
from vlarena.arena.board import Board, fit_board
from vlarena.arena.ranking import Leaderboard, Vote
from vlarena.arena.storage import results
from vlarena.arena.storage.database import DbSession
from vlarena.arena.storage.results import BoardFilter


async def test_the_fit_runs_on_one_worker_while_the_event_loop_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    votes = [Vote("A", "B", "a"), Vote("B", "C", "tie"), Vote("A", "C", "b")]

    async def vote_count(_: DbSession) -> int:
        return len(votes)

    async def all_votes(_: DbSession, where: BoardFilter) -> list[Vote]:
        return list(votes)

    async def nothing(_: DbSession, where: BoardFilter) -> dict[str, tuple[int, int]]:
        return {}

    async def no_kinds(_: DbSession) -> list[str]:
        return []

    monkeypatch.setattr(results, "vote_count", vote_count)
    monkeypatch.setattr(results, "votes", all_votes)
    monkeypatch.setattr(results, "sim_success", nothing)
    monkeypatch.setattr(results, "side_successes", nothing)
    monkeypatch.setattr(results, "task_kinds", no_kinds)

    started, release = threading.Event(), threading.Event()
    fits: list[tuple[int, bool]] = []  # per fit: its thread, and whether the loop released it

    def gated(
        votes: list[Vote], rounds: int, provisional_votes: int
    ) -> tuple[Leaderboard, dict[str, float]]:
        started.set()
        released = release.wait(timeout=10)  # only a coroutine on the event loop sets it
        fits.append((threading.get_ident(), released))
        return fit_board(votes, rounds, provisional_votes)

    monkeypatch.setattr(board_module, "fit_board", gated)
    db = cast(async_sessionmaker[DbSession], contextlib.nullcontext)
    board = Board(db, rounds=50, ttl_s=0, scene_ids=("table",), provisional_votes=20)
    try:
        gets = [asyncio.create_task(board.get()) for _ in range(3)]
        async with asyncio.timeout(10):
            while not started.is_set():  # the loop goes on while the fit waits
                await asyncio.sleep(0.001)
        release.set()
        boards = await asyncio.gather(*gets)
        assert [b.votes for b in boards] == [3, 3, 3]
        assert len(fits) == 1  # one computation; the other requests waited for its result
        worker, released = fits[0]
        assert released
        assert worker != threading.get_ident()
        votes.append(Vote("C", "A", "a"))
        assert (await board.get()).votes == 4
        assert [thread for thread, _ in fits] == [worker, worker]  # the same worker, reused
    finally:
        await board.close()
