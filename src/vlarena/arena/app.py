"""The arena backend's FastAPI app: settings, services, error handlers, routers, the web UI."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from vlarena import __version__
from vlarena.arena.deps import Arena
from vlarena.arena.routes import ROUTERS
from vlarena.arena.settings import ArenaSettings
from vlarena.arena.storage.database import migrate
from vlarena.httpjson import BodyLimit, install_error_handlers

MAX_BODY_BYTES = 16 * 1024  # the largest body is an instruction of at most 500 characters


def create_app(settings: ArenaSettings | None = None) -> FastAPI:
    """The arena backend, ready for uvicorn; migrates the database at start-up."""
    arena = Arena.build(settings or ArenaSettings())

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await migrate(arena.engine)
        await arena.runner.recover()
        yield
        await arena.close()

    app = FastAPI(
        title="VLArena arena",
        version=__version__,
        lifespan=lifespan,
        description="Two anonymous policies, one instruction, one start state: watch, vote, rank.",
    )
    app.state.arena = arena
    install_error_handlers(app)
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)
    for router in ROUTERS:
        app.include_router(router)
    web = arena.settings.web_dir
    if web.is_dir():  # the built UI (make install); the API works without it
        app.mount("/", StaticFiles(directory=web, html=True), name="web")
    return app
