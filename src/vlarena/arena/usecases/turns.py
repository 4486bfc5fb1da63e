"""Adding a turn: admitted once, checked by the execution service, stored once per key, queued.

A turn is normalized and validated once, into a `TurnRequest`; everything after takes that.
The battle's state is checked on the battle as loaded (to refuse early, before any call to
the execution service), then again under the battle's lock, in the transaction that inserts
the turn: that check is the one a concurrent vote or turn cannot slip past.
"""

import asyncio
from dataclasses import dataclass
from typing import Self

from sqlalchemy.exc import IntegrityError

from vlarena.arena.schemas import BattleOut
from vlarena.arena.storage import crud
from vlarena.arena.storage.tables import BattleRow, TurnRow
from vlarena.arena.usecases.context import UseCase
from vlarena.arena.usecases.rules import check_can_add, check_owner
from vlarena.arena.usecases.runner import Episodes, TurnRunner
from vlarena.arena.views import hidden
from vlarena.errors import ConflictError, InvalidRequestError
from vlarena.httpjson import unstorable


@dataclass(frozen=True)
class TurnRequest:
    """A turn as admitted: its instruction normalized (whitespace collapsed) and in bounds."""

    session_id: str
    battle_id: str
    instruction: str
    key: str | None  # the Idempotency-Key: a repeat with it adds nothing

    @classmethod
    def admit(
        cls, session_id: str, battle_id: str, instruction: str, key: str | None, max_chars: int
    ) -> Self:
        text = " ".join(instruction.split())
        if not text or len(text) > max_chars:
            raise InvalidRequestError(f"instruction must have 1 to {max_chars} characters")
        if unstorable(text):
            raise InvalidRequestError("instruction must not hold control characters")
        return cls(session_id, battle_id, text, key)


@dataclass(frozen=True, eq=False)
class Turns(UseCase):
    """Adding a turn to a battle (the runner runs it)."""

    runner: TurnRunner

    async def add(self, request: TurnRequest, ip: str) -> tuple[BattleOut, bool]:
        """Queue a turn; with an idempotency key, a repeat returns the first (created=False).

        While every turn place is taken, a request without a key is refused first, before any
        database read; one with a key is looked up first (a repeat gets its turn back)."""
        if request.key is None:
            self.runner.queue.check_room()
        async with self.db() as s:
            battle = await crud.get_battle(s, request.battle_id)
        check_owner(battle, request.session_id)
        if request.key is not None and (turn := crud.turn_by_key(battle, request.key)):
            return self._replayed(battle, turn, request), False  # a retry: no limits apply
        await self.limiter.hit("turn", request.session_id, ip)
        check_can_add(battle, self.settings.max_turns_per_battle)
        seed = self.rng.randrange(2**31)
        episodes = Episodes.of(battle, request.instruction, seed, self.settings.max_steps)
        self.runner.queue.reserve()
        try:
            for call in episodes.requests:  # one after the other: a half-open breaker lets one by
                await hidden(episodes.models, self.client.check(call))
        except BaseException:
            self.runner.queue.release()
            raise
        # Shielded: once stored, a turn is submitted even if this request is cancelled.
        return await asyncio.shield(self._store(request, episodes))

    async def _store(self, request: TurnRequest, episodes: Episodes) -> tuple[BattleOut, bool]:
        """Insert the turn under the battle's lock and run it in the reserved place (given back
        if nothing is stored)."""
        stored = False
        try:
            async with self.db.begin() as s:
                battle = await crud.get_battle(s, request.battle_id, lock=True)
                if request.key is not None and (turn := crud.turn_by_key(battle, request.key)):
                    return self._replayed(battle, turn, request), False  # a concurrent twin won
                check_can_add(battle, self.settings.max_turns_per_battle)
                turn = crud.add_turn(
                    battle, request.instruction, episodes.seed, self.settings.max_steps, request.key
                )
            stored = True
        except IntegrityError:  # SQLite has no row locks: a concurrent insert won the race
            async with self.db() as s:
                battle = await crud.get_battle(s, request.battle_id)
            if request.key is not None and (turn := crud.turn_by_key(battle, request.key)):
                return self._replayed(battle, turn, request), False
            raise ConflictError("another turn was added to this battle at the same time") from None
        finally:
            if not stored:
                self.runner.queue.release()
        await self.runner.submit(turn.id, episodes)
        return self.views.battle(battle), True

    def _replayed(self, battle: BattleRow, turn: TurnRow, request: TurnRequest) -> BattleOut:
        if turn.instruction != request.instruction:
            raise ConflictError("this Idempotency-Key was used for a different instruction")
        return self.views.battle(battle)
