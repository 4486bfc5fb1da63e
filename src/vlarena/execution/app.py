"""The execution service's FastAPI app, assembled: settings, model catalog, episode service,
shared error bodies, the request size limit and the routes."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from vlarena import __version__
from vlarena.execution.catalog import ModelCatalog
from vlarena.execution.episodes import EpisodeService
from vlarena.execution.routes import api_router
from vlarena.execution.settings import ExecutionSettings
from vlarena.httpjson import install_error_handlers, install_middleware

MAX_BODY_BYTES = 16 * 1024  # an /execute request is a few hundred bytes


def create_app(settings: ExecutionSettings | None = None) -> FastAPI:
    """The execution service, ready for uvicorn."""
    settings = settings or ExecutionSettings()
    service = EpisodeService(settings, ModelCatalog(settings))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        service.close()

    app = FastAPI(
        title="VLArena execution service",
        version=__version__,
        lifespan=lifespan,
        description="Runs one simulated episode per request.",
    )
    app.state.service = service
    install_error_handlers(app)
    install_middleware(app, MAX_BODY_BYTES, settings.trusted_proxies)
    app.include_router(api_router)
    return app
