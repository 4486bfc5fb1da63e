"""FastAPI app of the arena backend: sessions, battles, turns, votes, leaderboard, export."""

import hmac
import json
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Path, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles

from vlarena import __version__
from vlarena.arena.battles import Arena
from vlarena.arena.board import EXPORT_KINDS, Board, ExportKind
from vlarena.arena.client import ExecutionClient
from vlarena.arena.errors import classify
from vlarena.arena.ratelimit import RateLimiter
from vlarena.arena.schemas import (
    BattleCreate,
    BattleOut,
    LeaderboardOut,
    Replay,
    SessionOut,
    TurnCreate,
    VoteCreate,
)
from vlarena.arena.settings import ArenaSettings
from vlarena.arena.storage.database import make_engine, migrate, session_factory
from vlarena.errors import AuthError, RetryLaterError, UnknownNameError
from vlarena.httpjson import BodyLimit, ErrorBody, install_error_handlers

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (401, 403, 404, 409, 413, 422, 429, 502, 503)
}
MAX_BODY_BYTES = 16 * 1024  # the largest body is an instruction of at most 500 characters
IdempotencyKey = Annotated[
    str | None,
    Header(max_length=200, description="Retrying with the same key never adds a second turn."),
]


def error_response(exc: BaseException) -> JSONResponse:
    status, name, detail = classify(exc)
    headers = {}
    if isinstance(exc, RetryLaterError):
        headers["Retry-After"] = str(math.ceil(exc.retry_after_s))
    return JSONResponse({"error": name, "detail": detail}, status, headers=headers)


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def bearer(authorization: Annotated[str | None, Header()] = None) -> str | None:
    if authorization is None:
        return None
    scheme, _, token = authorization.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


async def session_of(request: Request, token: Annotated[str | None, Depends(bearer)]) -> str:
    arena: Arena = request.app.state.arena
    return await arena.authenticate(token)


Session = Annotated[str, Depends(session_of)]
BattleId = Annotated[str, Path(min_length=1, max_length=32)]


def create_app(settings: ArenaSettings | None = None) -> FastAPI:
    """The arena backend, ready for uvicorn; migrates the database at start-up."""
    settings = settings or ArenaSettings()
    engine = make_engine(settings.database_url)
    db = session_factory(engine)
    client = ExecutionClient(settings)
    limiter = RateLimiter(
        settings.rate_limit_storage,
        {
            "session": settings.session_rate,
            "battle": settings.battle_rate,
            "turn": settings.turn_rate,
            "vote": settings.vote_rate,
        },
    )
    arena = Arena(settings, db, client, limiter)
    board = Board(db, settings.bootstrap_rounds, settings.leaderboard_ttl_s)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await migrate(engine)
        await arena.recover()
        yield
        await arena.queue.close()
        await board.close()
        await client.aclose()
        await engine.dispose()

    app = FastAPI(
        title="VLArena arena",
        version=__version__,
        lifespan=lifespan,
        description="Two anonymous policies, one instruction, one start state: watch, vote, rank.",
    )
    app.state.arena = arena

    install_error_handlers(app, error_response)
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)

    @app.post("/api/sessions", status_code=201, response_model=SessionOut, responses=ERRORS)
    async def new_session(request: Request) -> SessionOut:
        """An anonymous session: its token owns the battles and votes made with it."""
        session_id, token = await arena.create_session(client_ip(request))
        return SessionOut(session_id=session_id, token=token)

    @app.post("/api/battles", status_code=201, response_model=BattleOut, responses=ERRORS)
    async def new_battle(body: BattleCreate, session: Session, request: Request) -> BattleOut:
        """Draw two hidden models (favouring the least-battled) for a scene."""
        return await arena.create_battle(session, body.scene_id, client_ip(request))

    @app.get("/api/battles/{battle_id}", response_model=BattleOut, responses=ERRORS)
    async def get_battle(battle_id: BattleId) -> BattleOut:
        """A battle's status, turns and queue positions; models only after the vote."""
        return await arena.battle(battle_id)

    @app.post(
        "/api/battles/{battle_id}/turns",
        status_code=202,
        response_model=BattleOut,
        responses=ERRORS,
    )
    async def new_turn(
        battle_id: BattleId,
        body: TurnCreate,
        session: Session,
        request: Request,
        response: Response,
        idempotency_key: IdempotencyKey = None,
    ) -> BattleOut:
        """Run both models on one instruction, seed and start state (202: queued).

        A repeat with the same Idempotency-Key answers 200 with the battle and adds nothing.
        """
        battle, created = await arena.add_turn(
            session, battle_id, body.instruction, idempotency_key, client_ip(request)
        )
        if not created:
            response.status_code = 200
        return battle

    @app.post("/api/battles/{battle_id}/vote", response_model=BattleOut, responses=ERRORS)
    async def vote(
        battle_id: BattleId, body: VoteCreate, session: Session, request: Request
    ) -> BattleOut:
        """One vote per battle; the answer reveals both models and their sim success."""
        return await arena.vote(session, battle_id, body.choice, client_ip(request))

    @app.get(
        "/api/battles/{battle_id}/turns/{number}/episodes/{side}",
        response_model=Replay,
        responses=ERRORS,
    )
    async def replay(
        battle_id: BattleId,
        number: Annotated[int, Path(ge=1, le=1000)],
        side: Annotated[str, Path(pattern="^[ab]$")],
    ) -> Replay:
        """One episode's joint trajectory for replay in the browser."""
        return await arena.replay(battle_id, number, side)

    @app.get("/api/leaderboard", response_model=LeaderboardOut)
    async def get_leaderboard() -> LeaderboardOut:
        """Bradley-Terry-Davidson ratings with bootstrap CIs, sim success, vote/sim agreement."""
        return await board.get()

    @app.get(
        "/api/export/{kind}", responses=ERRORS | {200: {"content": {"application/x-ndjson": {}}}}
    )
    async def export(
        kind: ExportKind, token: Annotated[str | None, Depends(bearer)]
    ) -> StreamingResponse:
        """Voted battles, their episodes or their votes as JSON lines."""
        admin = settings.admin_token
        if admin is not None and not hmac.compare_digest(token or "", admin.get_secret_value()):
            raise AuthError("export needs the admin token (VLA_ARENA_ADMIN_TOKEN)")
        return StreamingResponse(
            board.export(kind),
            media_type="application/x-ndjson",
            headers={"Content-Disposition": f"attachment; filename={kind}.jsonl"},
        )

    @app.get("/api/scenes")
    async def scenes() -> list[dict[str, Any]]:
        """The scenes a battle may use, with example instructions."""
        listed = await client.scenes()
        return [{"scene_id": s["scene_id"], "examples": s.get("examples", []),
                 "manifest_url": f"/api/scenes/{s['scene_id']}/manifest"}
                for s in listed if s["scene_id"] in settings.scene_ids]  # fmt: skip

    async def scene_manifest(scene_id: str) -> dict[str, Any]:
        if scene_id not in settings.scene_ids:
            raise UnknownNameError("scene", scene_id, settings.scene_ids)
        manifest: dict[str, Any] = json.loads(
            await client.scene_file(f"/scenes/{scene_id}/manifest")
        )
        for entry in manifest["files"]:
            entry["url"] = f"/api/scenes/{scene_id}/files/{entry['path']}"
        return manifest

    @app.get("/api/scenes/{scene_id}/manifest", responses=ERRORS)
    async def manifest(scene_id: Annotated[str, Path(max_length=50)]) -> dict[str, Any]:
        """The scene's MJCF and meshes (from the execution service) for the browser replay."""
        return await scene_manifest(scene_id)

    @app.get("/api/scenes/{scene_id}/files/{path:path}", responses=ERRORS)
    async def scene_file(scene_id: Annotated[str, Path(max_length=50)], path: str) -> Response:
        listed = {entry["path"] for entry in (await scene_manifest(scene_id))["files"]}
        if path not in listed:  # a whitelist: only the manifest's files are fetched
            raise UnknownNameError("scene file", path, [])
        content = await client.scene_file(f"/scenes/{scene_id}/files/{path}")
        return Response(content, media_type="application/octet-stream",
                        headers={"Cache-Control": "public, max-age=3600"})  # fmt: skip

    @app.get("/api/health")
    async def health() -> dict[str, Any]:
        """Liveness, the execution service's breaker, and the turn queue."""
        return {
            "status": "ok",
            "version": __version__,
            "execution": {
                "breaker": client.breaker.state,
                "breaker_opened": client.breaker.opened_count,
            },
            "turns": arena.queue.counts,
            "export_kinds": list(EXPORT_KINDS),
        }

    if settings.web_dir.is_dir():  # the built UI (make install); the API works without it
        app.mount("/", StaticFiles(directory=settings.web_dir, html=True), name="web")
    return app
