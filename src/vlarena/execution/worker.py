"""The execution service as a queue worker: it leases turns from the broker and runs both
episodes here, exactly as POST /episodes would, then publishes the result.

A leased turn is renewed every half second while it runs (with its progress). A worker that
dies stops renewing, and the turn goes to another worker once the lease runs out; a worker that
finds its lease taken stops the turn. A worker leases only when it has room for both episodes;
one whose service fills up meanwhile (POST /episodes shares its slots), or that is shutting
down, hands the turn back without counting an attempt. The arena stores the first result of a
turn and drops the rest, so a retried turn still ends with one pair of episodes.

Nothing here is cancelled while it waits for Redis (redis-py may then leave the task running,
or the connection in a bad state): `stop()` asks the loops to end, and they do within a second.
"""

import asyncio
import logging
import os
import socket

from redis.exceptions import RedisError

from vlarena.broker import Leased, QueueSettings, TurnJob, TurnResult, TurnStreams
from vlarena.errors import (
    ConfigError,
    ExecutionFailedError,
    InvalidRequestError,
    RetryLaterError,
    UnknownNameError,
)
from vlarena.execution.episodes import Admitted, EpisodeService
from vlarena.execution.jobs import Job
from vlarena.execution.schemas import ExecuteRequest, ExecuteResponse
from vlarena.execution.views import episode_view
from vlarena.httpjson import ErrorBody

log = logging.getLogger(__name__)
RETRY_S = 1.0  # wait after the broker failed a call, or while the service has no room
RENEW_S = 0.5  # how often a running turn's lease is renewed and its steps published
EPISODES = 2  # a turn's episodes, run at once


class TurnWorker:
    """Runs turns from the queue, at most `slots` at once (two episodes each)."""

    def __init__(self, settings: QueueSettings, service: EpisodeService) -> None:
        self.settings = settings
        self.service = service
        self.name = f"exec-{socket.gethostname()}-{os.getpid()}"
        self.streams = TurnStreams(settings, self.name)
        if service.room < EPISODES:
            raise ConfigError(
                "a queue worker runs two episodes a turn: VLA_EXEC_MAX_CONCURRENT_EPISODES plus "
                "VLA_EXEC_MAX_WAITING_EPISODES must be at least 2"
            )
        self.slots = max(1, service.settings.max_concurrent_episodes // EPISODES)
        self._free = asyncio.Semaphore(self.slots)
        self._turns: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        """Lease and run turns until `stop()`; a broker outage is waited out. Turns still
        running then are handed back (no attempt is counted)."""
        try:
            await self._lease_until_stopped()
        finally:
            await asyncio.gather(*self._turns, return_exceptions=True)
            await self.streams.aclose()

    def stop(self) -> None:
        self._stopping.set()

    async def _lease_until_stopped(self) -> None:
        while not self._stopping.is_set():
            await self._free.acquire()
            if self._stopping.is_set():
                self._free.release()
                break
            if self.service.room < EPISODES:  # HTTP clients hold the slots: lease nothing
                self._free.release()
                await asyncio.sleep(RETRY_S)
                continue
            try:
                leased = await self.streams.lease()
            except Exception as exc:  # the broker, or an entry it cannot take: go on
                self._free.release()
                log.warning("cannot lease a turn (%s); retrying in %g s", exc, RETRY_S)
                await asyncio.sleep(RETRY_S)
                continue
            except BaseException:
                self._free.release()
                raise
            if leased is None:
                self._free.release()
                continue
            if self._stopping.is_set():  # leased while stopping: back at once
                self._free.release()
                await self.streams.give_up(leased)
                break
            task = asyncio.get_running_loop().create_task(self._turn(leased))
            self._turns.add(task)
            task.add_done_callback(self._turns.discard)

    async def _turn(self, leased: Leased) -> None:
        try:
            result = await self._hold(leased)
            if result is not None:
                await self._publish(leased, result)
        except Exception:
            log.exception("turn %s: worker error; its lease will expire", leased.job.turn_id)
        finally:
            self._free.release()

    async def _hold(self, leased: Leased) -> TurnResult | None:
        """Run the turn while renewing its lease; None if the lease was lost or handed back."""
        job = leased.job
        if leased.attempts > self.settings.max_attempts:
            tries = leased.attempts - 1
            detail = f"no result after {tries} lease{'s' if tries > 1 else ''} of the turn"
            return TurnResult.failed(
                job.turn_id, self.name, ErrorBody.of(ExecutionFailedError(detail))
            )
        progress = [Job(r.max_steps or 0) for r in job.requests]
        work = asyncio.ensure_future(self._episodes(job, progress))
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            while not work.done():
                await asyncio.wait(
                    {work, stopping},
                    timeout=min(RENEW_S, self.settings.lease_s / 3),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if work.done():
                    break
                if stopping.done():
                    raise RetryLaterError("the worker is stopping")
                try:
                    if not await self.streams.renew(leased.entry_id):
                        log.warning("turn %s: lease lost; stopping it here", job.turn_id)
                        return None
                    await self.streams.report(job.turn_id, min(p.steps_done for p in progress))
                except (RedisError, OSError) as exc:  # the lease may lapse: the result decides
                    log.warning("turn %s: cannot renew the lease (%s)", job.turn_id, exc)
            return work.result()
        except RetryLaterError as exc:  # no room after all, or stopping: hand it back
            log.info("turn %s handed back: %s", job.turn_id, exc)
            work.cancel()
            await asyncio.gather(work, return_exceptions=True)  # its episodes have stopped
            try:
                await self.streams.give_up(leased)
            except (RedisError, OSError) as error:  # the lease runs out instead
                log.warning("turn %s not handed back: %s", job.turn_id, error)
            return None
        finally:
            stopping.cancel()
            work.cancel()
            await asyncio.gather(work, return_exceptions=True)

    async def _episodes(self, job: TurnJob, progress: list[Job]) -> TurnResult:
        """Admit both episodes (RetryLaterError if the service has no room), then run them."""
        admitted: list[Admitted] = []
        try:
            for request in job.requests:
                admitted.append(await self._admit(request))
        except BaseException as exc:  # cancelled too: the admitted slots are given back
            for held in admitted:
                self.service.discard(held)
            if isinstance(exc, RetryLaterError) or not isinstance(exc, Exception):
                raise
            return TurnResult.failed(job.turn_id, self.name, ErrorBody.of(exc))
        outcomes = await asyncio.gather(
            *(self._run(a, p) for a, p in zip(admitted, progress, strict=True)),
            return_exceptions=True,
        )
        failures = [o for o in outcomes if isinstance(o, BaseException)]
        if failures:
            return TurnResult.failed(job.turn_id, self.name, ErrorBody.of(failures[0]))
        a, b = (o for o in outcomes if isinstance(o, ExecuteResponse))
        return TurnResult(turn_id=job.turn_id, worker=self.name, episodes=(a, b))

    async def _admit(self, request: ExecuteRequest) -> Admitted:
        try:
            return await self.service.admit(request)
        except (InvalidRequestError, UnknownNameError) as exc:
            # It passed the check when the turn was added: a refusal now is the model's.
            raise ExecutionFailedError(f"{request.model_id}: {exc}") from None

    async def _run(self, admitted: Admitted, progress: Job) -> ExecuteResponse:
        return episode_view(await self.service.run(admitted, progress))

    async def _publish(self, leased: Leased, result: TurnResult) -> None:
        """Send the result, retrying through a short broker outage (the lease covers it)."""
        for attempt in range(3):
            try:
                await self.streams.complete(leased.entry_id, result)
                return
            except (RedisError, OSError) as exc:
                log.warning("turn %s: cannot publish its result (%s)", leased.job.turn_id, exc)
                await asyncio.sleep(RETRY_S * 2**attempt)
        log.error("turn %s: result not published; the turn will run again", leased.job.turn_id)
