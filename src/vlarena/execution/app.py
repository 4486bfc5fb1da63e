"""The execution service's FastAPI app, assembled: settings, model catalog, episode service,
shared error bodies, the request size limit and the routes; with a turn queue configured, it is
also an execution worker that runs the queue's turns."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from vlarena import __version__
from vlarena.broker import QueueSettings
from vlarena.execution.catalog import ModelCatalog
from vlarena.execution.episodes import EpisodeService
from vlarena.execution.routes import api_router
from vlarena.execution.settings import ExecutionSettings
from vlarena.execution.worker import TurnWorker
from vlarena.httpjson import install_error_handlers, install_middleware

MAX_BODY_BYTES = 16 * 1024  # an /execute request is a few hundred bytes


def create_app(
    settings: ExecutionSettings | None = None, queue: QueueSettings | None = None
) -> FastAPI:
    """The execution service, ready for uvicorn; a worker of the turn queue if `queue.url`."""
    settings = settings or ExecutionSettings()
    service = EpisodeService(settings, ModelCatalog(settings))
    worker = TurnWorker(queue, service) if queue is not None and queue.url else None

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        leasing = asyncio.get_running_loop().create_task(worker.run()) if worker else None
        yield
        try:
            if leasing is not None and worker is not None:
                worker.stop()
                await leasing  # its turns stop and are handed back
        finally:
            service.close()

    app = FastAPI(
        title="VLArena execution service",
        version=__version__,
        lifespan=lifespan,
        description="Runs one simulated episode per request.",
    )
    app.state.service = service
    app.state.worker = worker
    install_error_handlers(app)
    install_middleware(app, MAX_BODY_BYTES, settings.trusted_proxies)
    app.include_router(api_router)
    return app
