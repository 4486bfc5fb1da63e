"""Episodes, the service's one use case: a request is checked once into a `ValidRequest`,
admitted to an episode slot, then run on the worker pool, awaited or as a background job.

The cheap checks (names, instruction, budget) run on the event loop; whether the model exists
and fits the scene is asked off it (it may load a model or ask the inference server). A request
that will run takes its slot before that, so a saturated service refuses at once.
"""

import asyncio
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from vlarena.errors import InvalidObservationError, SaturatedError, UnknownNameError
from vlarena.execution.catalog import ModelCatalog
from vlarena.execution.jobs import Job, JobStore
from vlarena.execution.schemas import ExecuteRequest
from vlarena.execution.settings import ExecutionSettings
from vlarena.execution.views import episode_view
from vlarena.execution.worlds import WorldCache
from vlarena.httpjson import ErrorBody
from vlarena.sim import ROBOTS, SCENES, Episode, Task, parse_instruction, run_episode
from vlarena.sim.controllers import check_fits
from vlarena.sim.tasks import check_scene
from vlarena.sim.world import shared_world


class _StoppedError(Exception):
    """Raised in a simulation thread whose episode was cancelled."""


@dataclass(frozen=True)
class ValidRequest:
    """A request that passed every check: a known robot, scene and model, an instruction the
    scene can host, a model that can drive the robot there, and a step budget within the cap."""

    request: ExecuteRequest
    task: Task  # the instruction, parsed
    max_steps: int  # the request's budget, else the default


@dataclass(frozen=True, eq=False)
class Admitted:
    """A valid request holding an episode slot: run it once, which frees the slot."""

    valid: ValidRequest


class EpisodeService:
    """Runs episodes off the event loop with bounded concurrency and a bounded wait."""

    def __init__(self, settings: ExecutionSettings, catalog: ModelCatalog) -> None:
        self.settings = settings
        self.catalog = catalog
        self._pool = ThreadPoolExecutor(settings.max_concurrent_episodes, "episode")
        self._worlds = WorldCache()  # each worker thread builds its own
        self._limit = settings.max_concurrent_episodes + settings.max_waiting_episodes
        self.admitted = 0  # running + waiting
        self.jobs = JobStore(settings.stored_async_episodes)

    @property
    def room(self) -> int:
        """Episodes that may still be admitted now."""
        return self._limit - self.admitted

    async def check(self, request: ExecuteRequest) -> ValidRequest:
        """The request, validated; raises the error it would get otherwise (nothing runs)."""
        valid = self._check_names(request)
        await asyncio.to_thread(self._check_model, request)
        return valid

    async def admit(self, request: ExecuteRequest) -> Admitted:
        """Check `request` and take an episode slot for it; SaturatedError when none is left
        (before the model is asked about)."""
        valid = self._check_names(request)
        if self.admitted >= self._limit:
            raise SaturatedError(
                f"{self.admitted} episodes running or waiting (limit {self._limit}); retry later"
            )
        self.admitted += 1
        try:
            await asyncio.to_thread(self._check_model, request)
        except BaseException:
            self.admitted -= 1
            raise
        return Admitted(valid)

    def _check_names(self, request: ExecuteRequest) -> ValidRequest:
        """Every check but the model's (ValidRequest once `_check_model` passes too)."""
        if request.robot_id not in ROBOTS:
            raise UnknownNameError("robot", request.robot_id, ROBOTS)
        if request.scene_id not in SCENES:
            raise UnknownNameError("scene", request.scene_id, SCENES)
        task = parse_instruction(request.instruction)
        check_scene(task, request.scene_id)
        steps = request.max_steps or self.settings.default_max_steps
        if steps > self.settings.max_steps_cap:
            raise InvalidObservationError(
                f"max_steps {steps} exceeds the cap of {self.settings.max_steps_cap}"
            )
        return ValidRequest(request, task, steps)

    def _check_model(self, request: ExecuteRequest) -> None:
        """The model exists and can drive the robot in the scene (blocking)."""
        info = self.catalog.info(request.model_id)
        if info is not None:
            check_fits(info, shared_world(request.scene_id))  # only its model is read

    async def run(self, admitted: Admitted, job: Job | None = None) -> Episode:
        """Simulate an admitted request on a worker thread, then free its slot. Cancelled, the
        simulation stops at its next step and the slot is freed once the thread is done."""
        job = job if job is not None else Job(admitted.valid.max_steps)
        try:
            loop = asyncio.get_running_loop()
            future = loop.run_in_executor(self._pool, self._simulate, admitted.valid, job)
            episode = await asyncio.shield(future)
        except asyncio.CancelledError:
            job.cancelled = True
            await asyncio.wait({future})
            if not future.cancelled():
                future.exception()  # whatever else ended it: nobody awaits it now
            raise
        finally:
            self.admitted -= 1
        assert episode is not None  # only a cancelled episode stops early
        return episode

    def discard(self, admitted: Admitted) -> None:
        """Free the slot of an admitted request that will not run."""
        del admitted
        self.admitted -= 1

    def _simulate(self, valid: ValidRequest, job: Job) -> Episode | None:
        """The episode; None if it was cancelled (it stops at its next step)."""
        if job.cancelled:  # before it started: nothing to set up
            return None
        request = valid.request
        world = self._worlds.get(request.scene_id)
        controller = self.catalog.controller(request.model_id)
        job.status = "running"

        def progress(steps: int) -> None:
            if job.cancelled:
                raise _StoppedError
            job.steps_done = steps

        seed = request.seed if request.seed is not None else int(uuid.uuid4().int % 2**31)
        try:
            return run_episode(
                world,
                controller,
                request.instruction,
                seed,
                valid.max_steps,
                self.settings.horizon,
                progress,
                task=valid.task,
                ensemble=self.settings.ensemble,
            )
        except _StoppedError:  # nobody waits for it; its frames are freed on this thread
            return None
        finally:
            controller.close()

    def submit(self, admitted: Admitted) -> str:
        """Start an admitted episode in the background; returns the id to poll it by."""
        job = Job(admitted.valid.max_steps)

        async def run() -> None:
            try:
                job.result = episode_view(await self.run(admitted, job))
                job.status = "done"
            except BaseException as exc:  # cancelled at shutdown too: never left "running"
                stopped = SaturatedError("the service stopped before the episode ran")
                job.error = ErrorBody.of(exc if isinstance(exc, Exception) else stopped)
                job.status = "failed"
                if not isinstance(exc, Exception):
                    raise

        job.task = asyncio.get_running_loop().create_task(run())
        return self.jobs.add(job)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
