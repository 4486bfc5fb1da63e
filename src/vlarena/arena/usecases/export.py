"""The export: voted battles, their episodes or their votes as JSON lines."""

import json
from collections.abc import AsyncIterator
from typing import Any, Literal

from sqlalchemy.ext.asyncio import async_sessionmaker

from vlarena.arena.storage import results
from vlarena.arena.storage.database import DbSession
from vlarena.arena.storage.tables import BattleRow, aware

ExportKind = Literal["battles", "episodes", "votes"]
EXPORT_KINDS: tuple[ExportKind, ...] = ("battles", "episodes", "votes")


async def export_lines(db: async_sessionmaker[DbSession], kind: ExportKind) -> AsyncIterator[str]:
    """Voted battles only (identities of unvoted ones stay hidden), one JSON per line."""
    async with db() as s:
        async for battle in results.voted_battles(s, with_episodes=kind == "episodes"):
            for record in _records(kind, battle):
                yield json.dumps(record, separators=(",", ":")) + "\n"


def _records(kind: ExportKind, battle: BattleRow) -> list[dict[str, Any]]:
    vote = battle.vote
    assert vote is not None  # the export joins on votes
    base: dict[str, Any] = {
        "battle_id": battle.id,
        "model_a": battle.model_a,
        "model_b": battle.model_b,
    }
    scored = {"score_a": vote.score_a, "score_b": vote.score_b, "reason": vote.reason}
    if kind == "votes":
        created = aware(vote.created_at).isoformat()
        return [base | {"choice": vote.choice} | scored | {"created_at": created}]
    if kind == "battles":
        turns = [
            {
                "number": t.number,
                "instruction": t.instruction,
                "seed": t.seed,
                "task": t.task_kind,
                "status": t.status,
                "error": t.error,
            }
            for t in battle.turns
        ]
        created = aware(battle.created_at).isoformat()
        return [
            base
            | {
                "scene_id": battle.scene_id,
                "vote": vote.choice,
                **scored,
                "turns": turns,
                "created_at": created,
            }
        ]
    return [
        {
            "battle_id": battle.id,
            "turn": t.number,
            "side": e.side,
            "model_id": e.model_id,
            "success": e.success,
            "num_steps": e.num_steps,
            "duration_ms": e.duration_ms,
            "episode": e.data.model_dump(mode="json"),
        }
        for t in battle.turns
        for e in t.episodes
    ]
