"""Votes with progress scores and a reason; episodes with their task kind and model latency.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06 20:00:00
"""

import json
import statistics
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None
BATCH = 200  # episode documents read at once by the backfill


def upgrade() -> None:
    with op.batch_alter_table("votes") as batch:
        batch.add_column(sa.Column("score_a", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("score_b", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("reason", sa.String(length=280), nullable=True))
    with op.batch_alter_table("episodes") as batch:
        batch.add_column(sa.Column("task_kind", sa.String(length=20), nullable=True))
        batch.add_column(sa.Column("inference_ms", sa.Double(), nullable=True))
        batch.create_index(batch.f("ix_episodes_task_kind"), ["task_kind"], unique=False)
    _backfill()


def _backfill() -> None:
    """Episodes stored before: their task kind and latency, from their documents, read
    `BATCH` at a time (a document holds every step: all at once could be gigabytes)."""
    bind = op.get_bind()
    episodes = sa.table(
        "episodes",
        sa.column("id", sa.String),
        sa.column("data", sa.JSON),
        sa.column("task_kind", sa.String),
        sa.column("inference_ms", sa.Double),
    )
    ids = bind.execute(sa.select(episodes.c.id).order_by(episodes.c.id)).scalars().all()
    update = (
        episodes.update()
        .where(episodes.c.id == sa.bindparam("episode_id"))
        .values(task_kind=sa.bindparam("kind"), inference_ms=sa.bindparam("ms"))
    )
    for start in range(0, len(ids), BATCH):
        rows = bind.execute(
            sa.select(episodes.c.id, episodes.c.data).where(
                episodes.c.id.in_(ids[start : start + BATCH])
            )
        )
        values = [_derived(episode_id, data) for episode_id, data in rows]
        if values:
            bind.execute(update, values)


def _derived(episode_id: str, data: Any) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(data) if isinstance(data, str) else data
    calls = [s["inference_ms"] for s in document.get("states", []) if s["inference_ms"] > 0]
    return {
        "episode_id": episode_id,
        "kind": (document.get("task") or {}).get("kind"),
        "ms": statistics.median(calls) if calls else None,
    }


def downgrade() -> None:
    with op.batch_alter_table("episodes") as batch:
        batch.drop_index(batch.f("ix_episodes_task_kind"))
        batch.drop_column("inference_ms")
        batch.drop_column("task_kind")
    with op.batch_alter_table("votes") as batch:
        batch.drop_column("reason")
        batch.drop_column("score_b")
        batch.drop_column("score_a")
