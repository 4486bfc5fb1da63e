"""FastAPI app of the execution service: `POST /execute` and friends (ADR-003)."""

import asyncio
import hashlib
import logging
import threading
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import grpc
from fastapi import FastAPI
from fastapi.responses import FileResponse, JSONResponse

from vlarena import __version__
from vlarena.errors import (
    InvalidObservationError,
    ModelLoadError,
    PolicyOutputError,
    SaturatedError,
    UnknownNameError,
    VLArenaError,
)
from vlarena.execution.catalog import ModelCatalog
from vlarena.execution.schemas import (
    EpisodeStatus,
    ExecuteRequest,
    ExecuteResponse,
    Metadata,
    State,
    TaskOut,
    Timing,
)
from vlarena.execution.settings import ExecutionSettings
from vlarena.httpjson import BodyLimit, ErrorBody, install_error_handlers
from vlarena.sim import ROBOTS, SCENES, Episode, FrankaWorld, parse_instruction, run_episode
from vlarena.sim.tasks import check_scene, scene_examples
from vlarena.sim.world import CAMERAS

log = logging.getLogger(__name__)
MAX_BODY_BYTES = 16 * 1024  # an /execute request is a few hundred bytes
ASSETS = next(iter(SCENES.values())).parent


_STATUS: list[tuple[type[VLArenaError], int, str]] = [
    (UnknownNameError, 404, "not_found"),
    (InvalidObservationError, 422, "invalid_request"),
    (SaturatedError, 503, "saturated"),
    (ModelLoadError, 500, "model_loading_failed"),
    (PolicyOutputError, 502, "inference_failed"),
]


def error_response(exc: Exception) -> JSONResponse:
    """The one place where errors become HTTP responses with a JSON body."""
    for kind, code, name in _STATUS:
        if isinstance(exc, kind):
            return JSONResponse({"error": name, "detail": str(exc)}, status_code=code)
    if isinstance(exc, grpc.RpcError):
        detail = f"inference server: {exc.code().name}: {exc.details()}"
        if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                          grpc.StatusCode.RESOURCE_EXHAUSTED):  # fmt: skip
            return JSONResponse({"error": "inference_unavailable", "detail": detail}, 503)
        return JSONResponse({"error": "inference_failed", "detail": detail}, status_code=502)
    log.exception("unexpected error", exc_info=exc)
    return JSONResponse({"error": "internal_error", "detail": "see the server log"}, 500)


@dataclass
class _Job:
    max_steps: int
    status: Literal["queued", "running", "done", "failed"] = "queued"
    steps_done: int = 0
    result: ExecuteResponse | None = None
    error: ErrorBody | None = None
    task: "asyncio.Task[None] | None" = field(default=None, repr=False)


class EpisodeService:
    """Runs episodes off the event loop with bounded concurrency and a bounded wait."""

    def __init__(self, settings: ExecutionSettings, catalog: ModelCatalog) -> None:
        self.settings = settings
        self.catalog = catalog
        self._pool = ThreadPoolExecutor(settings.max_concurrent_episodes, "episode")
        self._limit = settings.max_concurrent_episodes + settings.max_waiting_episodes
        self.admitted = 0  # running + waiting
        self._worlds = threading.local()  # each worker thread keeps its own scenes (and GL)
        self.jobs: OrderedDict[str, _Job] = OrderedDict()

    def check(self, request: ExecuteRequest) -> int:
        """Raise the error this request would get, without running it; returns max_steps."""
        if request.robot_id not in ROBOTS:
            raise UnknownNameError("robot", request.robot_id, ROBOTS)
        if request.scene_id not in SCENES:
            raise UnknownNameError("scene", request.scene_id, SCENES)
        check_scene(parse_instruction(request.instruction), request.scene_id)
        self.catalog.check(request.model_id)
        steps = request.max_steps or self.settings.default_max_steps
        if steps > self.settings.max_steps_cap:
            raise InvalidObservationError(
                f"max_steps {steps} exceeds the cap of {self.settings.max_steps_cap}"
            )
        return steps

    def admit(self, request: ExecuteRequest) -> int:
        """Check the request and take an episode slot (release with `run`); returns max_steps."""
        steps = self.check(request)
        if self.admitted >= self._limit:
            raise SaturatedError(
                f"{self.admitted} episodes running or waiting (limit {self._limit}); retry later"
            )
        self.admitted += 1
        return steps

    async def run(self, request: ExecuteRequest, max_steps: int, job: _Job | None = None
                  ) -> ExecuteResponse:  # fmt: skip
        """Simulate an admitted request on a worker thread, then free its slot."""
        try:
            loop = asyncio.get_running_loop()
            episode = await loop.run_in_executor(self._pool, self._run, request, max_steps, job)
        finally:
            self.admitted -= 1
        return _response(episode)

    def _run(self, request: ExecuteRequest, max_steps: int, job: _Job | None) -> Episode:
        worlds: dict[str, FrankaWorld] = self._worlds.__dict__.setdefault("scenes", {})
        world = worlds.get(request.scene_id) or worlds.setdefault(
            request.scene_id, FrankaWorld(request.scene_id)
        )
        controller = self.catalog.controller(request.model_id)
        if job is not None:
            job.status = "running"

        def progress(steps: int) -> None:
            if job is not None:
                job.steps_done = steps

        seed = request.seed if request.seed is not None else int(uuid.uuid4().int % 2**31)
        return run_episode(world, controller, request.instruction, seed, max_steps,
                           self.settings.horizon, progress)  # fmt: skip

    def submit(self, request: ExecuteRequest) -> str:
        """Start an admitted episode in the background; poll it by id."""
        job = _Job(self.admit(request))
        job_id = uuid.uuid4().hex

        async def run() -> None:
            try:
                job.result = await self.run(request, job.max_steps, job)
                job.status = "done"
            except BaseException as exc:  # cancelled at shutdown too: never left "running"
                body = error_response(exc if isinstance(exc, Exception) else SaturatedError(
                    "the service stopped before the episode ran"))  # fmt: skip
                job.error = ErrorBody.model_validate_json(bytes(body.body))
                job.status = "failed"
                if not isinstance(exc, Exception):
                    raise

        job.task = asyncio.get_running_loop().create_task(run())
        self.jobs[job_id] = job
        while len(self.jobs) > self.settings.stored_async_episodes:
            oldest = next(iter(self.jobs))
            if self.jobs[oldest].status in ("queued", "running"):
                break
            self.jobs.pop(oldest)
        return job_id

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _response(episode: Episode) -> ExecuteResponse:
    task = episode.task
    return ExecuteResponse(
        actions=[s.action for s in episode.steps],
        states=[
            State(
                qpos=s.qpos,
                qvel=s.qvel,
                time=s.time_s,
                inference_ms=s.inference_ms,
                scene_qpos=s.scene_qpos,
            )
            for s in episode.steps
        ],
        duration_ms=episode.duration_ms,
        metadata=Metadata(
            num_steps=len(episode.steps),
            max_steps=episode.max_steps,
            early_termination=episode.early_termination,
        ),
        success=episode.success,
        seed=episode.seed,
        model_id=episode.model_id,
        robot_id=episode.robot_id,
        scene_id=episode.scene_id,
        instruction=episode.instruction,
        task=TaskOut(kind=task.kind, color=task.color, other=task.other, side=task.side),
        timing=Timing(
            inference_ms=episode.inference_ms,
            simulation_ms=max(0.0, episode.duration_ms - episode.inference_ms),
        ),
        mujoco_version=episode.mujoco_version,
        initial_qpos=episode.initial_qpos,
    )


def scene_files(scene_id: str) -> list[Path]:
    """Every file a browser needs to rebuild the scene, relative to the assets folder."""
    if scene_id not in SCENES:
        raise UnknownNameError("scene", scene_id, SCENES)
    robot = sorted(p for p in (ASSETS / "franka").rglob("*") if p.is_file())
    return [SCENES[scene_id], *robot]


def create_app(settings: ExecutionSettings | None = None) -> FastAPI:
    """The execution service, ready for uvicorn."""
    settings = settings or ExecutionSettings()
    service = EpisodeService(settings, ModelCatalog(settings))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        service.close()

    app = FastAPI(title="VLArena execution service", version=__version__, lifespan=lifespan,
                  description="Runs one simulated episode per request (ADR-003).")  # fmt: skip
    app.state.service = service
    errors: dict[int | str, dict[str, Any]] = {
        code: {"model": ErrorBody} for code in (404, 422, 500, 502, 503)
    }

    install_error_handlers(app, error_response)
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)

    @app.post("/execute", response_model=ExecuteResponse, responses=errors)
    async def execute(request: ExecuteRequest) -> ExecuteResponse:
        """Run one episode and return its actions, states, timing and outcome."""
        return await service.run(request, service.admit(request))

    @app.post("/execute/check", responses=errors)
    async def check(request: ExecuteRequest) -> dict[str, int]:
        """Validate an /execute request without running it (the error it would get, or 200)."""
        return {"max_steps": service.check(request)}

    @app.post("/episodes", status_code=202, responses=errors)
    async def start_episode(request: ExecuteRequest) -> dict[str, str]:
        """Start an episode in the background (for long ones); poll GET /episodes/{id}."""
        job_id = service.submit(request)
        return {"episode_id": job_id, "status_url": f"/episodes/{job_id}"}

    @app.get("/episodes/{episode_id}", response_model=EpisodeStatus, responses=errors)
    async def episode_status(episode_id: str) -> EpisodeStatus:
        job = service.jobs.get(episode_id)
        if job is None:
            raise UnknownNameError("episode", episode_id, [])
        return EpisodeStatus(episode_id=episode_id, status=job.status,
                             steps_done=job.steps_done, max_steps=job.max_steps,
                             result=job.result, error=job.error)  # fmt: skip

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "version": __version__, "episodes_admitted": service.admitted,
                "max_concurrent_episodes": settings.max_concurrent_episodes}  # fmt: skip

    @app.get("/models")
    async def models() -> list[dict[str, str]]:
        entries = await asyncio.to_thread(service.catalog.entries)
        return [{"model_id": e.name, "kind": e.kind, "source": e.source} for e in entries]

    @app.get("/scenes")
    async def scenes() -> list[dict[str, Any]]:
        return [{"scene_id": s, "robot_ids": list(ROBOTS), "cameras": list(CAMERAS),
                 "manifest_url": f"/scenes/{s}/manifest", "examples": scene_examples(s)}
                for s in SCENES]  # fmt: skip

    @app.get("/scenes/{scene_id}/manifest", responses=errors)
    async def manifest(scene_id: str) -> dict[str, Any]:
        """The scene's MJCF and meshes, with sizes and hashes, for a browser-side rebuild."""
        files = [
            {"path": p.relative_to(ASSETS).as_posix(), "size": p.stat().st_size,
             "sha256": hashlib.sha256(p.read_bytes()).hexdigest(),
             "url": f"/scenes/{scene_id}/files/{p.relative_to(ASSETS).as_posix()}"}
            for p in scene_files(scene_id)
        ]  # fmt: skip
        return {"scene_id": scene_id, "root": files[0]["path"], "files": files}

    @app.get("/scenes/{scene_id}/files/{path:path}", responses=errors)
    async def scene_file(scene_id: str, path: str) -> FileResponse:
        allowed = {p.relative_to(ASSETS).as_posix(): p for p in scene_files(scene_id)}
        if path not in allowed:  # a whitelist: no path ever reaches the filesystem unchecked
            raise UnknownNameError("file", path, [])
        return FileResponse(allowed[path])

    return app
