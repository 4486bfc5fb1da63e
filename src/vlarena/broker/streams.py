"""The turn queue on Redis streams (consumer groups), and the keys beside it.

- `<prefix>:turns`: turns to run. Execution workers read it as the group `workers`; a read
  entry is a lease, renewed while the worker runs it; an entry idle past the lease is claimed by
  another worker (XAUTOCLAIM), and one delivered `max_attempts` times is failed.
- `<prefix>:results`: finished turns. Every arena process reads it as the group `arena` and
  stores each result once (the turn row decides: a duplicate finds its turn already over).
- `<prefix>:live` (hash): turns the queue holds, added with the turn and removed with its
  stored result; the arena re-queues an active turn missing here (a broker that lost data).
- `<prefix>:progress` (hash): steps done of each running turn, for the UI.

Acknowledged entries are deleted, so both streams hold only work in flight. An entry that
cannot be read fails its turn (its `turn` field names it) rather than leaving it active.
"""

from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import ValidationError
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from vlarena.broker.messages import TurnJob, TurnResult
from vlarena.broker.settings import QueueSettings
from vlarena.httpjson import ErrorBody

WORKERS = "workers"
ARENA = "arena"
BLOCK_MS = 1000  # a read waits this long for a new entry
# Queue a turn unless the queue already holds it (`live`), atomically: several arena
# processes sweeping at once queue a lost turn once.
REQUEUE = """
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  redis.call('XADD', KEYS[2], '*', 'turn', ARGV[1], 'job', ARGV[3])
  return 1
end
return 0
"""
# Claim a pending entry for its owner only (a lease another worker took stays taken): set its
# idle time, and its delivery count (ARGV[5]; "" keeps it).
RECLAIM = """
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if #pending == 0 or pending[1][2] ~= ARGV[3] then
  return 0
end
local count = ARGV[5]
if count == '' then
  count = pending[1][4]
end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[3], 0, ARGV[2], 'IDLE', ARGV[4], 'RETRYCOUNT', count,
  'JUSTID')
return 1
"""
MAX_TURN_ID = 32  # a turn id longer than this is not one of ours
UNREADABLE = ErrorBody(error="execution_failed", detail="the queued turn could not be read")
M = TypeVar("M", TurnJob, TurnResult)


@dataclass(frozen=True)
class Leased:
    """A turn a worker holds: its entry, the job, and how many times it was handed out."""

    entry_id: str
    job: TurnJob
    attempts: int


@dataclass(frozen=True)
class Snapshot:
    """What the arena shows of the queue: places of waiting turns, steps of running ones."""

    running: int = 0
    waiting: int = 0
    positions: dict[str, int] = field(default_factory=dict)  # turn → 1 for the next to run
    steps: dict[str, int] = field(default_factory=dict)  # turn → steps done by both sides


@dataclass(frozen=True)
class Delivered:
    """A result entry for the arena: the turn it names, the result if it could be read, and
    how many times it was handed to an arena process."""

    entry_id: str
    turn_id: str | None
    result: TurnResult | None
    attempts: int


class TurnStreams:
    """One process's view of the turn queue, as consumer `consumer`."""

    def __init__(self, settings: QueueSettings, consumer: str) -> None:
        if settings.url is None:
            raise ValueError("the turn queue needs VLA_QUEUE_URL")
        self.settings = settings
        self.consumer = consumer
        self.redis: Redis = Redis.from_url(
            settings.url,
            decode_responses=True,
            socket_connect_timeout=2.0,
            socket_timeout=(BLOCK_MS / 1000) + 5.0,
            health_check_interval=10,
        )
        prefix = settings.prefix
        self.turns, self.results = f"{prefix}:turns", f"{prefix}:results"
        self.live, self.progress = f"{prefix}:live", f"{prefix}:progress"
        self._cursors = {self.turns: "0-0", self.results: "0-0"}  # XAUTOCLAIM's scan position
        self._requeue = self.redis.register_script(REQUEUE)
        self._reclaim = self.redis.register_script(RECLAIM)

    async def ensure_groups(self) -> None:
        """Create both streams' groups (idempotent; after a broker that lost its data, too)."""
        for stream, group in ((self.turns, WORKERS), (self.results, ARENA)):
            try:
                await self.redis.xgroup_create(stream, group, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def aclose(self) -> None:
        await self.redis.aclose()

    # The arena's side --------------------------------------------------------------------
    async def enqueue(self, job: TurnJob) -> None:
        """Queue a stored turn (and mark it live) in one transaction."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xadd(self.turns, {"turn": job.turn_id, "job": job.model_dump_json()})
            pipe.hset(self.live, job.turn_id, self.consumer)
            await pipe.execute()

    async def requeue(self, job: TurnJob) -> bool:
        """Queue a turn unless the queue holds it already; True if this call queued it."""
        keys = [self.live, self.turns]
        args = [job.turn_id, self.consumer, job.model_dump_json()]
        return bool(await self._requeue(keys=keys, args=args))

    async def known(self, turn_ids: list[str]) -> set[str]:
        """Which of these turns the queue holds."""
        if not turn_ids:
            return set()
        held = await self.redis.hmget(self.live, turn_ids)  # type: ignore[misc]
        return {t for t, h in zip(turn_ids, held, strict=True) if h is not None}

    async def snapshot(self, listed: int) -> Snapshot:
        """Running turns' progress, how many turns wait, and the first `listed` in order."""
        try:
            groups = await self.redis.xinfo_groups(self.turns)
        except ResponseError:  # no stream: the broker lost it (or never had it)
            await self.ensure_groups()
            return Snapshot()
        group = next((g for g in groups if g["name"] == WORKERS), None)
        if group is None:
            await self.ensure_groups()
            return Snapshot()
        waiting: Any = await self.redis.xrange(
            self.turns, min=f"({group['last-delivered-id']}", count=listed
        )
        positions = {f["turn"]: n for n, (_, f) in enumerate(waiting, 1) if f.get("turn")}
        progress: Any = await self.redis.hgetall(self.progress)  # type: ignore[misc]
        steps = {turn: int(done) for turn, done in progress.items()}
        lag = group.get("lag")  # None where deleted entries hide the count: then as listed
        count = int(lag) if lag is not None else len(waiting)
        return Snapshot(int(group["pending"]), count, positions, steps)

    async def next_results(self) -> list[Delivered]:
        """Results to store: those a dead arena process left (idle past the lease) first,
        then new ones."""
        entries = await self._claim(self.results, ARENA, count=10)
        if not entries:
            entries = await self._read(self.results, ARENA, count=10)
        return [
            Delivered(
                entry_id,
                _turn_of(fields),
                _parsed(TurnResult, fields, "result"),
                await self._attempts(self.results, ARENA, entry_id),
            )
            for entry_id, fields in entries
        ]

    async def settle(self, entry_id: str, turn_id: str | None) -> None:
        """A result is stored (or dropped): acknowledge it and forget its turn."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xack(self.results, ARENA, entry_id)
            pipe.xdel(self.results, entry_id)
            if turn_id is not None:
                pipe.hdel(self.live, turn_id)
                pipe.hdel(self.progress, turn_id)
            await pipe.execute()

    # The workers' side ---------------------------------------------------------------------
    async def lease(self) -> Leased | None:
        """The next turn to run: one whose lease ran out first, else a new one (None: none came
        within BLOCK_MS). An entry that is not a job fails its turn (or is dropped)."""
        entries = await self._claim(self.turns, WORKERS, count=1)
        if not entries:
            entries = await self._read(self.turns, WORKERS, count=1)
        if not entries:
            return None
        entry_id, fields = entries[0]
        job = _parsed(TurnJob, fields, "job")
        if job is None:
            turn_id = _turn_of(fields)
            if turn_id:
                await self.complete(entry_id, TurnResult.failed(turn_id, self.consumer, UNREADABLE))
            else:
                await self._drop(entry_id)
            return None
        return Leased(entry_id, job, await self._attempts(self.turns, WORKERS, entry_id))

    async def renew(self, entry_id: str) -> bool:
        """Extend a lease; False if it was lost (claimed by another worker, or gone)."""
        return await self._claim_own(entry_id, idle_ms=0, attempts=None)

    async def give_up(self, leased: Leased) -> None:
        """Hand a leased turn back at once: it looks expired to the next worker, and this lease
        does not count as an attempt (unless another worker holds it by now)."""
        await self._claim_own(leased.entry_id, self.settings.lease_ms, leased.attempts - 1)

    async def report(self, turn_id: str, steps: int) -> None:
        await self.redis.hset(self.progress, turn_id, str(steps))  # type: ignore[misc]

    async def complete(self, entry_id: str, result: TurnResult) -> None:
        """Publish a turn's result and drop its entry, in one transaction."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xadd(self.results, {"turn": result.turn_id, "result": result.model_dump_json()})
            pipe.xack(self.turns, WORKERS, entry_id)
            pipe.xdel(self.turns, entry_id)
            await pipe.execute()

    # Shared ------------------------------------------------------------------------------
    async def _claim(self, stream: str, group: str, count: int) -> list[tuple[str, Any]]:
        try:
            answer = await self.redis.xautoclaim(
                stream, group, self.consumer, self.settings.lease_ms, self._cursors[stream], count
            )
        except ResponseError as exc:
            await self._regroup(exc)
            return []
        self._cursors[stream] = answer[0]  # "0-0" once the scan wrapped around
        return [(entry_id, fields) for entry_id, fields in answer[1] if fields]

    async def _claim_own(self, entry_id: str, idle_ms: int, attempts: int | None) -> bool:
        count = "" if attempts is None else str(attempts)
        args = [WORKERS, entry_id, self.consumer, str(idle_ms), count]
        return bool(await self._reclaim(keys=[self.turns], args=args))

    async def _attempts(self, stream: str, group: str, entry_id: str) -> int:
        pending = await self.redis.xpending_range(stream, group, entry_id, entry_id, 1)
        return int(pending[0]["times_delivered"]) if pending else 1

    async def _read(self, stream: str, group: str, count: int) -> list[tuple[str, Any]]:
        try:
            answer: Any = await self.redis.xreadgroup(
                group, self.consumer, {stream: ">"}, count=count, block=BLOCK_MS
            )
        except ResponseError as exc:
            await self._regroup(exc)
            return []
        return list(answer[0][1]) if answer else []

    async def _regroup(self, exc: ResponseError) -> None:
        """A group is missing (a new or emptied broker): make both, else re-raise."""
        if "NOGROUP" not in str(exc):
            raise exc
        await self.ensure_groups()

    async def _drop(self, entry_id: str) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xack(self.turns, WORKERS, entry_id)
            pipe.xdel(self.turns, entry_id)
            await pipe.execute()


def _turn_of(fields: dict[str, str]) -> str | None:
    """The turn an entry names, if it names one that could be ours."""
    turn = fields.get("turn")
    return turn if turn and len(turn) <= MAX_TURN_ID else None


def _parsed(kind: type[M], fields: dict[str, str], key: str) -> M | None:
    try:
        return kind.model_validate_json(fields[key])
    except (KeyError, ValidationError):
        return None
