"""Sessions, battles, turns and votes: the arena's domain over the database and the executor."""

import asyncio
import hashlib
import logging
import random
import re
import secrets
import uuid
from collections.abc import Awaitable
from typing import Literal, TypeVar

from sqlalchemy import func, select, union_all, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlalchemy.orm import undefer

from vlarena.arena.client import ExecutionClient
from vlarena.arena.errors import classify
from vlarena.arena.queue import TurnQueue
from vlarena.arena.ratelimit import RateLimiter
from vlarena.arena.schemas import BattleOut, BattleStatus, EpisodeOut, Replay, TurnOut
from vlarena.arena.settings import ArenaSettings
from vlarena.arena.storage.database import DbSession
from vlarena.arena.storage.tables import (
    BattleRow,
    EpisodeRow,
    SessionRow,
    TurnRow,
    VoteRow,
    aware,
    utcnow,
)
from vlarena.errors import (
    AuthError,
    ConflictError,
    ExecutionFailedError,
    ExecutionUnavailableError,
    ForbiddenError,
    InvalidRequestError,
    UnknownNameError,
)
from vlarena.execution.schemas import ExecuteRequest
from vlarena.httpjson import ErrorBody

log = logging.getLogger(__name__)
ROBOT = "franka"
SIDES: tuple[Literal["a"], Literal["b"]] = ("a", "b")
ACTIVE = ("queued", "running")
SESSION_CACHE = 10_000
LABELS = ("model A", "model B")
T = TypeVar("T")


def new_id() -> str:
    return uuid.uuid4().hex


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Arena:
    """Everything behind /api: each method is one use case."""

    def __init__(self, settings: ArenaSettings, db: async_sessionmaker[DbSession],
                 client: ExecutionClient, limiter: RateLimiter) -> None:  # fmt: skip
        self.settings = settings
        self.db = db
        self.client = client
        self.limiter = limiter
        self.queue = TurnQueue(settings.max_running_turns, settings.max_queued_turns, self._run,
                               self._crashed)  # fmt: skip
        self._rng = random.Random(settings.seed)
        self._sessions: dict[str, str] = {}  # token digest → session id (bounded, FIFO)
        self._progress: dict[str, dict[str, int]] = {}  # running turn → steps done per side

    async def recover(self) -> int:
        """Turns left queued or running by a previous process are marked failed (not lost).

        One arena process per database: a second one would fail the first one's turns.
        """
        return await self._finish(None, "interrupted", "the arena restarted before the turn "
                                  "finished")  # fmt: skip

    # Sessions ---------------------------------------------------------------------------
    async def create_session(self, ip: str) -> tuple[str, str]:
        await self.limiter.hit("session", ip)
        session_id, token = new_id(), secrets.token_urlsafe(32)
        async with self.db.begin() as s:
            s.add(SessionRow(id=session_id, token_sha256=token_hash(token), ip=ip[:64]))
        return session_id, token

    async def authenticate(self, token: str | None) -> str:
        """The session id of a bearer token."""
        if not token:
            raise AuthError("a session token is required: POST /api/sessions, then send "
                            "'Authorization: Bearer <token>'")  # fmt: skip
        digest = token_hash(token)
        session_id = self._sessions.get(digest)
        if session_id is None:
            async with self.db() as s:
                session_id = await s.scalar(
                    select(SessionRow.id).where(SessionRow.token_sha256 == digest)
                )
            if session_id is None:
                raise AuthError("unknown session token")
            if len(self._sessions) >= SESSION_CACHE:
                self._sessions.pop(next(iter(self._sessions)))
            self._sessions[digest] = session_id  # sessions never change: safe to remember
        return session_id

    # Battles ----------------------------------------------------------------------------
    async def create_battle(self, session_id: str, scene_id: str, ip: str) -> BattleOut:
        await self.limiter.hit("battle", session_id, ip)
        if scene_id not in self.settings.scene_ids:
            raise InvalidRequestError(
                f"unknown scene {scene_id!r}; valid: {', '.join(self.settings.scene_ids)}"
            )
        model_a, model_b = await self._draw_models()
        battle = BattleRow(id=new_id(), session_id=session_id, scene_id=scene_id,
                           model_a=model_a, model_b=model_b, turns=[], vote=None)  # fmt: skip
        async with self.db.begin() as s:
            s.add(battle)
        return self._battle_out(battle)

    async def _draw_models(self) -> tuple[str, str]:
        """Two different models, favouring those with few battles, in random order.

        Weights are 1 / (1 + battles beyond the least-battled model's): random, so the public
        leaderboard never tells which pair an open battle holds.
        """
        served = await self.client.models()
        wanted = self.settings.model_ids
        available = [m for m in wanted if m in served] if wanted else list(served)
        if len(available) < 2:
            raise ExecutionUnavailableError(
                f"a battle needs two models; the execution service offers {len(available)} "
                "of those configured", retry_after_s=60.0)  # fmt: skip
        sides = union_all(select(BattleRow.model_a.label("m")), select(BattleRow.model_b))
        column = sides.subquery().c.m
        async with self.db() as s:
            rows = await s.execute(select(column, func.count()).group_by(column))
            counts: dict[str, int] = dict(rows.all())
        low = min(counts.get(m, 0) for m in available)
        pool = {m: 1 / (1 + counts.get(m, 0) - low) for m in available}
        first = self._rng.choices(list(pool), list(pool.values()))[0]
        del pool[first]
        second = self._rng.choices(list(pool), list(pool.values()))[0]
        return first, second  # drawn in random order already

    async def battle(self, battle_id: str) -> BattleOut:
        async with self.db() as s:
            return self._battle_out(await self._load(s, battle_id))

    async def _load(self, s: DbSession, battle_id: str, owner: str | None = None,
                    lock: bool = False) -> BattleRow:  # fmt: skip
        """A battle with its turns, episodes and vote.

        `lock` first writes the row (a no-op update): PostgreSQL then holds the row lock and
        SQLite its database write lock until the transaction ends, so a concurrent vote and
        turn cannot both pass their checks.
        """
        if lock:
            await s.execute(update(BattleRow).where(BattleRow.id == battle_id)
                            .values(id=BattleRow.id))  # fmt: skip
        battle = await s.get(BattleRow, battle_id)
        if battle is None:
            raise UnknownNameError("battle", battle_id, [])
        if owner is not None and battle.session_id != owner:
            raise ForbiddenError("this battle belongs to another session")
        return battle

    # Turns ------------------------------------------------------------------------------
    async def add_turn(self, session_id: str, battle_id: str, instruction: str, key: str | None,
                       ip: str) -> tuple[BattleOut, bool]:  # fmt: skip
        """Queue a turn; with an idempotency key, a repeat returns the first (created=False)."""
        instruction = " ".join(instruction.split())
        limit = self.settings.max_instruction_chars
        if not instruction or len(instruction) > limit:
            raise InvalidRequestError(f"instruction must have 1 to {limit} characters")
        async with self.db() as s:
            battle = await self._load(s, battle_id, owner=session_id)
        if key is not None and (turn := _by_key(battle, key)) is not None:
            return self._replayed(battle, turn, instruction)  # a retry: no limits apply
        await self.limiter.hit("turn", session_id, ip)
        _check_can_add(battle, self.settings.max_turns_per_battle)
        models = (battle.model_a, battle.model_b)
        seed = self._rng.randrange(2**31)
        self.queue.reserve()
        try:
            for model in models:  # one after the other: a half-open breaker lets one through
                await self._hidden(models, self.client.check(
                    self._request(model, battle.scene_id, instruction, seed)))  # fmt: skip
        except BaseException:
            self.queue.release()
            raise
        # Shielded: once stored, a turn is submitted even if this request is cancelled.
        replayed = await asyncio.shield(
            self._store_and_submit(battle_id, session_id, instruction, seed, key)
        )
        if replayed is not None:  # a concurrent request with the same key won
            return replayed, False
        return await self.battle(battle_id), True

    async def _store_and_submit(self, battle_id: str, session_id: str, instruction: str,
                                seed: int, key: str | None) -> BattleOut | None:  # fmt: skip
        """Store the turn and run it in the reserved place (given back if nothing is stored)."""
        try:
            stored = await self._store_turn(battle_id, session_id, instruction, seed, key)
        except BaseException:
            self.queue.release()
            raise
        if isinstance(stored, BattleOut):
            self.queue.release()
            return stored
        self.queue.submit(stored.id)
        return None

    async def _store_turn(self, battle_id: str, session_id: str, instruction: str, seed: int,
                          key: str | None) -> TurnRow | BattleOut:  # fmt: skip
        """Insert the turn, re-checking under the battle's lock (a vote may have landed)."""
        try:
            async with self.db.begin() as s:
                battle = await self._load(s, battle_id, owner=session_id, lock=True)
                if key is not None and (existing := _by_key(battle, key)) is not None:
                    return self._replayed(battle, existing, instruction)[0]
                _check_can_add(battle, self.settings.max_turns_per_battle)
                turn = TurnRow(id=new_id(), battle_id=battle_id, number=len(battle.turns) + 1,
                               instruction=instruction, seed=seed,
                               max_steps=self.settings.max_steps, status="queued", error=None,
                               idempotency_key=key, episodes=[])  # fmt: skip
                s.add(turn)
            return turn
        except IntegrityError:  # SQLite has no row locks: a concurrent insert won the race
            async with self.db() as s:
                battle = await self._load(s, battle_id)
            if key is not None and (existing := _by_key(battle, key)) is not None:
                return self._replayed(battle, existing, instruction)[0]
            raise ConflictError("another turn was added to this battle at the same time") from None

    def _replayed(self, battle: BattleRow, turn: TurnRow, instruction: str
                  ) -> tuple[BattleOut, bool]:  # fmt: skip
        if turn.instruction != instruction:
            raise ConflictError("this Idempotency-Key was used for a different instruction")
        return self._battle_out(battle), False

    def _request(self, model_id: str, scene_id: str, instruction: str, seed: int
                 ) -> ExecuteRequest:  # fmt: skip
        return ExecuteRequest(model_id=model_id, robot_id=ROBOT, scene_id=scene_id,
                              instruction=instruction, seed=seed,
                              max_steps=self.settings.max_steps)  # fmt: skip

    @staticmethod
    async def _hidden(models: tuple[str, str], call: Awaitable[T]) -> T:
        """Await `call`; errors reach the client without naming the hidden models."""
        try:
            return await call
        except InvalidRequestError as exc:  # what to fix in the request: keep, anonymized
            raise InvalidRequestError(_anonymize(str(exc), models)) from None
        except ExecutionFailedError as exc:
            log.warning("execution failed: %s", exc)  # the full story stays in the log
            raise ExecutionFailedError(
                "the execution service failed to run a model (details in the arena's log)"
            ) from None

    async def _run(self, turn_id: str) -> None:
        """Run both episodes concurrently; store each as it arrives; record the outcome."""
        error: tuple[str, str] | None = None
        try:
            async with self.db.begin() as s:
                turn = await s.get_one(TurnRow, turn_id)
                battle = await s.get_one(BattleRow, turn.battle_id)
                turn.status = "running"
                models = (battle.model_a, battle.model_b)
                requests = [self._request(m, battle.scene_id, turn.instruction, turn.seed)
                            for m in models]  # fmt: skip
            outcomes = await asyncio.gather(
                *(self._hidden(models, self._episode(turn_id, side, request))
                  for side, request in zip(SIDES, requests, strict=True)),
                return_exceptions=True,
            )  # fmt: skip
            failures = [o for o in outcomes if isinstance(o, BaseException)]
            error = classify(failures[0])[1:] if failures else None
        except asyncio.CancelledError:
            error = ("interrupted", "the arena stopped before the turn finished")
            raise
        except Exception:
            error = ("internal_error", "the arena failed to run this turn")
            raise
        finally:
            self._progress.pop(turn_id, None)
            if error:
                await self._finish(turn_id, *error)
            else:
                await self._finish(turn_id)

    async def _crashed(self, turn_id: str, exc: BaseException) -> None:
        """A turn whose bookkeeping itself failed (e.g. the database): fail it if we can."""
        try:
            await self._finish(turn_id, "internal_error", "the arena failed to run this turn")
        except Exception:
            log.exception("could not mark turn %s failed; the next start will", turn_id)

    async def _finish(self, turn_id: str | None, error: str | None = None,
                      detail: str = "") -> int:  # fmt: skip
        """Set a turn (None: every active turn) done, or failed with an error body."""
        query = update(TurnRow).where(TurnRow.status.in_(ACTIVE))
        if turn_id is not None:
            query = query.where(TurnRow.id == turn_id)
        values = {"status": "failed", "error": {"error": error, "detail": detail}} if error else {
            "status": "done", "error": None}  # fmt: skip
        async with self.db.begin() as s:
            result = await s.execute(query.values(**values, finished_at=utcnow()))
        return int(getattr(result, "rowcount", 0) or 0)

    async def _episode(self, turn_id: str, side: str, request: ExecuteRequest) -> None:
        steps = self._progress.setdefault(turn_id, {})

        def progress(done: int) -> None:
            steps[side] = done

        result = await self.client.execute(request, progress)
        async with self.db.begin() as s:
            s.add(EpisodeRow(id=new_id(), turn_id=turn_id, side=side, model_id=request.model_id,
                             success=result.success, num_steps=result.metadata.num_steps,
                             duration_ms=result.duration_ms,
                             data=result.model_dump(mode="json")))  # fmt: skip

    # Votes ------------------------------------------------------------------------------
    async def vote(self, session_id: str, battle_id: str, choice: str, ip: str) -> BattleOut:
        await self.limiter.hit("vote", session_id, ip)
        try:
            async with self.db.begin() as s:
                battle = await self._load(s, battle_id, owner=session_id, lock=True)
                _check_can_vote(battle)
                battle.vote = VoteRow(id=new_id(), battle_id=battle_id, session_id=session_id,
                                      choice=choice)  # fmt: skip
        except IntegrityError:  # a concurrent vote committed first
            raise ConflictError("this battle already has a vote") from None
        return self._battle_out(battle)

    # Views ------------------------------------------------------------------------------
    async def replay(self, battle_id: str, number: int, side: str) -> Replay:
        async with self.db() as s:
            battle = await self._load(s, battle_id)
            episode = await s.scalar(
                select(EpisodeRow).options(undefer(EpisodeRow.data)).join(TurnRow)
                .where(TurnRow.battle_id == battle_id, TurnRow.number == number,
                       EpisodeRow.side == side)
            )  # fmt: skip
        if episode is None:
            raise UnknownNameError("episode", f"{battle_id}/{number}/{side}", [])
        data, revealed = episode.data, battle.vote is not None
        states = data["states"]
        return Replay(
            battle_id=battle_id, turn=number, side=episode.side, scene_id=data["scene_id"],
            robot_id=data["robot_id"], instruction=data["instruction"], seed=data["seed"],
            mujoco_version=data["mujoco_version"], initial_qpos=data["initial_qpos"],
            qpos=[st["scene_qpos"] for st in states], time=[st["time"] for st in states],
            actions=data["actions"], num_steps=episode.num_steps,
            model_id=episode.model_id if revealed else None,
            success=episode.success if revealed else None,
            revealed={k: data[k] for k in ("metadata", "timing", "task", "duration_ms")}
            if revealed else None,
        )  # fmt: skip

    def _battle_out(self, battle: BattleRow) -> BattleOut:
        revealed = battle.vote is not None
        return BattleOut(
            battle_id=battle.id, url=f"/api/battles/{battle.id}", scene_id=battle.scene_id,
            status=_status(battle), created_at=aware(battle.created_at),
            max_turns=self.settings.max_turns_per_battle,
            turns=[self._turn_out(battle, t, revealed) for t in battle.turns],
            model_a=battle.model_a if revealed else None,
            model_b=battle.model_b if revealed else None,
            vote=battle.vote.choice if battle.vote else None,
        )  # fmt: skip

    def _turn_out(self, battle: BattleRow, turn: TurnRow, revealed: bool) -> TurnOut:
        base = f"/api/battles/{battle.id}/turns/{turn.number}/episodes"
        episodes = [
            EpisodeOut(side=e.side, num_steps=e.num_steps, replay_url=f"{base}/{e.side}",
                       model_id=e.model_id if revealed else None,
                       success=e.success if revealed else None)
            for e in turn.episodes
        ]  # fmt: skip
        return TurnOut(
            number=turn.number, instruction=turn.instruction, seed=turn.seed,
            max_steps=turn.max_steps, status=turn.status,
            queue_position=self.queue.position(turn.id),
            progress=self._progress.get(turn.id),
            error=ErrorBody(**turn.error) if turn.error else None, episodes=episodes,
            created_at=aware(turn.created_at),
            finished_at=aware(turn.finished_at) if turn.finished_at else None,
        )  # fmt: skip


def _by_key(battle: BattleRow, key: str) -> TurnRow | None:
    return next((t for t in battle.turns if t.idempotency_key == key), None)


def _check_can_add(battle: BattleRow, max_turns: int) -> None:
    if battle.vote is not None:
        raise ConflictError("this battle has been voted on; start a new battle")
    if any(t.status in ACTIVE for t in battle.turns):
        raise ConflictError("a turn of this battle is still running; wait for it")
    if len(battle.turns) >= max_turns:
        raise ConflictError(f"a battle has at most {max_turns} turns; vote on it")


def _check_can_vote(battle: BattleRow) -> None:
    if battle.vote is not None:
        raise ConflictError("this battle already has a vote")
    if any(t.status in ACTIVE for t in battle.turns):
        raise ConflictError("a turn of this battle is still running; vote when it ends")
    if not any(t.status == "done" for t in battle.turns):
        raise ConflictError("nothing to vote on yet: no turn of this battle has finished")


def _status(battle: BattleRow) -> BattleStatus:
    if battle.vote is not None:
        return "voted"
    if not battle.turns:
        return "new"
    last = battle.turns[-1].status
    return "ready" if last == "done" else last  # type: ignore[return-value]


def _anonymize(detail: str, models: tuple[str, str]) -> str:
    """Replace whole-name occurrences of the hidden models (longest name first); drop lists of
    valid names, whose order would tell the sides apart."""
    detail = detail.split("; valid:")[0]
    for model, label in sorted(zip(models, LABELS, strict=True), key=lambda p: -len(p[0])):
        detail = re.sub(rf"(?<![\w.-]){re.escape(model)}(?![\w-]|\.[\w-])", label, detail)
    return detail
