"""The arena backend's FastAPI app: settings, services, error handlers, routers, the web UI."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from vlarena import __version__
from vlarena.arena.deps import Arena
from vlarena.arena.routes import ROUTERS
from vlarena.arena.settings import ArenaSettings
from vlarena.arena.storage.database import migrate
from vlarena.broker import QueueSettings
from vlarena.httpjson import install_error_handlers, install_middleware

MAX_BODY_BYTES = 16 * 1024  # the largest body is an instruction of at most 500 characters


def create_app(
    settings: ArenaSettings | None = None, queue: QueueSettings | None = None
) -> FastAPI:
    """The arena backend, ready for uvicorn; migrates the database at start-up. Turns run in
    this process, or on execution workers behind the broker at `queue.url`."""
    arena = Arena.build(settings or ArenaSettings(), queue or QueueSettings())

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await migrate(arena.engine)
        await arena.runner.start()
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
    install_middleware(app, MAX_BODY_BYTES, arena.settings.trusted_proxies)
    for router in ROUTERS:
        app.include_router(router)
    web = arena.settings.web_dir
    if web.is_dir():  # the built UI (make install); the API works without it
        serve_ui(app, web)
    return app


def serve_ui(app: FastAPI, web: Path) -> None:
    """The built UI: its page at / and its bundle under /assets. Not a mount at /, which would
    take every path, so a wrong method on an API route is 405 with its Allow, not static's."""
    page = web / "index.html"

    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)  # HEAD: health probes
    async def index() -> FileResponse:
        return FileResponse(page)

    if (web / "assets").is_dir():
        app.mount("/assets", StaticFiles(directory=web / "assets"), name="assets")
