"""The leaderboard and the export of voted battles."""

import hmac
from typing import Any

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from vlarena.arena.deps import ERRORS, Services, Token
from vlarena.arena.schemas import LeaderboardOut
from vlarena.arena.usecases.export import ExportKind, export_lines
from vlarena.errors import AuthError

router = APIRouter(prefix="/api", tags=["leaderboard"])
NDJSON: dict[int | str, dict[str, Any]] = {200: {"content": {"application/x-ndjson": {}}}}


@router.get("/leaderboard", response_model=LeaderboardOut)
async def get_leaderboard(services: Services) -> LeaderboardOut:
    """Bradley-Terry-Davidson ratings with bootstrap CIs, sim success, vote/sim agreement."""
    return await services.board.get()


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
