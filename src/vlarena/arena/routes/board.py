"""The leaderboard, the model cards and the export of voted battles."""

import hmac
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from vlarena.arena.deps import ERRORS, Services, Token
from vlarena.arena.schemas import LeaderboardOut, ModelCardOut
from vlarena.arena.storage.results import BoardFilter
from vlarena.arena.storage.tables import MAX_TASK_KIND_CHARS
from vlarena.arena.usecases.export import ExportKind, export_lines
from vlarena.errors import AuthError

router = APIRouter(prefix="/api", tags=["leaderboard"])
NDJSON: dict[int | str, dict[str, Any]] = {200: {"content": {"application/x-ndjson": {}}}}


TaskKind = Annotated[
    str | None,
    Query(
        pattern=f"^[a-z_]{{1,{MAX_TASK_KIND_CHARS}}}$",
        description="A task kind (see `task_kinds`).",
    ),
]
SceneId = Annotated[str | None, Query(max_length=50, description="A scene id.")]


@router.get("/leaderboard", response_model=LeaderboardOut, responses=ERRORS)
async def get_leaderboard(
    services: Services, task: TaskKind = None, scene: SceneId = None
) -> LeaderboardOut:
    """Bradley-Terry-Davidson ratings with their 95% intervals, provisional marks, sim success,
    vote/sim agreement and the head-to-head matrices; overall, or of one task kind or scene."""
    return await services.board.get(BoardFilter(task, scene))


@router.get("/models", response_model=list[ModelCardOut], responses=ERRORS)
async def model_cards(services: Services) -> list[ModelCardOut]:
    """A card per model: family, parameters, training, offline evaluation, license and source,
    its latency and its rating here."""
    return await services.cards.listed()


@router.get("/export/{kind}", responses=ERRORS | NDJSON)
async def export(kind: ExportKind, token: Token, services: Services) -> StreamingResponse:
    """Voted battles, their episodes or their votes as JSON lines."""
    admin = services.settings.admin_token
    if admin is not None and not hmac.compare_digest(token or "", admin.get_secret_value()):
        raise AuthError("export needs the admin token (VLA_ARENA_ADMIN_TOKEN)")
    return StreamingResponse(
        export_lines(services.db, kind),
        media_type="application/x-ndjson",
        headers={"Content-Disposition": f"attachment; filename={kind}.jsonl"},
    )
