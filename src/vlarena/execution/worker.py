"""The execution service as a queue worker: it leases turns from the broker and runs both
episodes here, exactly as POST /episodes would, then publishes the result.

A leased turn is renewed every third of the lease while it runs. A worker that dies stops
renewing, and the turn goes to another worker once the lease runs out; a worker that finds its
lease taken stops the turn. The arena stores the first result of a turn and drops the rest, so
a retried turn still ends with one pair of episodes.
"""

import asyncio
import logging
import os
import socket

from redis.exceptions import RedisError

from vlarena.broker import Leased, QueueSettings, TurnJob, TurnResult, TurnStreams
from vlarena.errors import (
    ExecutionFailedError,
    InvalidRequestError,
    RetryLaterError,
    UnknownNameError,
)
from vlarena.execution.episodes import EpisodeService
from vlarena.execution.jobs import Job
from vlarena.execution.schemas import ExecuteRequest, ExecuteResponse
from vlarena.execution.views import episode_view
from vlarena.httpjson import ErrorBody

log = logging.getLogger(__name__)
RETRY_S = 1.0  # wait after the broker failed a call
PROGRESS_S = 0.5  # how often a running turn's steps are published


class TurnWorker:
    """Runs turns from the queue, at most `slots` at once (two episodes each)."""

    def __init__(self, settings: QueueSettings, service: EpisodeService) -> None:
        self.settings = settings
        self.service = service
        self.name = f"exec-{socket.gethostname()}-{os.getpid()}"
        self.streams = TurnStreams(settings, self.name)
        self.slots = max(1, service.settings.max_concurrent_episodes // 2)
        self._free = asyncio.Semaphore(self.slots)
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        """Lease and run turns until cancelled; a broker outage is waited out."""
        while True:
            await self._free.acquire()
            try:
                leased = await self.streams.lease()
            except (RedisError, OSError) as exc:
                self._free.release()
                log.warning("turn queue unavailable (%s); retrying in %g s", exc, RETRY_S)
                await asyncio.sleep(RETRY_S)
                continue
            except BaseException:
                self._free.release()
                raise
            if leased is None:
                self._free.release()
                continue
            task = asyncio.get_running_loop().create_task(self._turn(leased))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.streams.aclose()

    async def _turn(self, leased: Leased) -> None:
        try:
            result = await self._held(leased)
            if result is not None:
                await self._publish(leased, result)
        except Exception:
            log.exception("turn %s: worker error; its lease will expire", leased.job.turn_id)
        finally:
            self._free.release()

    async def _held(self, leased: Leased) -> TurnResult | None:
        """Run the turn while renewing its lease; None if the lease was lost or handed back."""
        job = leased.job
        if leased.attempts > self.settings.max_attempts:
            tries = leased.attempts - 1
            detail = f"no result after {tries} lease{'s' if tries > 1 else ''} of the turn"
            return TurnResult.failed(job, self.name, ErrorBody.of(ExecutionFailedError(detail)))
        progress = [Job(r.max_steps or 0) for r in job.requests]
        work = asyncio.ensure_future(self._episodes(job, progress))
        renew_s = self.settings.lease_s / 3
        try:
            while not work.done():
                await asyncio.wait({work}, timeout=min(renew_s, PROGRESS_S))
                steps = min(p.steps_done for p in progress)
                try:
                    await self.streams.report(job.turn_id, steps)
                    if not await self.streams.renew(leased.entry_id):
                        log.warning("turn %s: lease lost; stopping it here", job.turn_id)
                        return None
                except (RedisError, OSError) as exc:  # the lease may lapse: the result decides
                    log.warning("turn %s: cannot renew the lease (%s)", job.turn_id, exc)
            return work.result()
        except RetryLaterError as exc:  # this service is saturated: another worker may run it
            log.info("turn %s handed back: %s", job.turn_id, exc)
            await self.streams.give_up(leased.entry_id)
            return None
        finally:
            work.cancel()

    async def _episodes(self, job: TurnJob, progress: list[Job]) -> TurnResult:
        outcomes = await asyncio.gather(
            *(self._episode(r, p) for r, p in zip(job.requests, progress, strict=True)),
            return_exceptions=True,
        )
        failures = [o for o in outcomes if isinstance(o, BaseException)]
        if busy := next((f for f in failures if isinstance(f, RetryLaterError)), None):
            raise busy
        if failures:
            return TurnResult.failed(job, self.name, ErrorBody.of(failures[0]))
        a, b = (o for o in outcomes if isinstance(o, ExecuteResponse))
        return TurnResult(turn_id=job.turn_id, worker=self.name, episodes=(a, b))

    async def _episode(self, request: ExecuteRequest, progress: Job) -> ExecuteResponse:
        try:
            admitted = await self.service.admit(request)
        except (InvalidRequestError, UnknownNameError) as exc:
            # It passed the check when the turn was added: a refusal now is the model's.
            raise ExecutionFailedError(f"{request.model_id}: {exc}") from None
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
