"""Sessions, battles, turns, episodes, votes.

Revision ID: 0001
Revises:
Create Date: 2026-11-23 16:18:14.761453
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sessions",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("ip", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_sha256"),
    )
    op.create_table(
        "battles",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("session_id", sa.String(length=32), nullable=False),
        sa.Column("scene_id", sa.String(length=50), nullable=False),
        sa.Column("model_a", sa.String(length=200), nullable=False),
        sa.Column("model_b", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["sessions.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_battles_model_a"), "battles", ["model_a"], unique=False)
    op.create_index(op.f("ix_battles_model_b"), "battles", ["model_b"], unique=False)
    op.create_index(op.f("ix_battles_session_id"), "battles", ["session_id"], unique=False)

    op.create_table(
        "turns",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("battle_id", sa.String(length=32), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("instruction", sa.String(length=500), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("max_steps", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column(
            "error",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("idempotency_key", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["battle_id"],
            ["battles.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("battle_id", "idempotency_key"),
        sa.UniqueConstraint("battle_id", "number"),
    )
    op.create_index(op.f("ix_turns_battle_id"), "turns", ["battle_id"], unique=False)
    op.create_index(op.f("ix_turns_status"), "turns", ["status"], unique=False)

    op.create_table(
        "votes",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("battle_id", sa.String(length=32), nullable=False),
        sa.Column("session_id", sa.String(length=32), nullable=False),
        sa.Column("choice", sa.String(length=8), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["battle_id"],
            ["battles.id"],
        ),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["sessions.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("battle_id"),
    )
    op.create_index(op.f("ix_votes_created_at"), "votes", ["created_at"], unique=False)
    op.create_index(op.f("ix_votes_session_id"), "votes", ["session_id"], unique=False)

    op.create_table(
        "episodes",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("turn_id", sa.String(length=32), nullable=False),
        sa.Column("side", sa.String(length=1), nullable=False),
        sa.Column("model_id", sa.String(length=200), nullable=False),
        sa.Column("success", sa.Boolean(), nullable=True),
        sa.Column("num_steps", sa.Integer(), nullable=False),
        sa.Column("duration_ms", sa.Double(), nullable=False),
        sa.Column(
            "data",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["turn_id"],
            ["turns.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("turn_id", "side"),
    )
    op.create_index(op.f("ix_episodes_model_id"), "episodes", ["model_id"], unique=False)
    op.create_index(op.f("ix_episodes_turn_id"), "episodes", ["turn_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_episodes_turn_id"), table_name="episodes")
    op.drop_index(op.f("ix_episodes_model_id"), table_name="episodes")

    op.drop_table("episodes")
    op.drop_index(op.f("ix_votes_session_id"), table_name="votes")
    op.drop_index(op.f("ix_votes_created_at"), table_name="votes")

    op.drop_table("votes")
    op.drop_index(op.f("ix_turns_status"), table_name="turns")
    op.drop_index(op.f("ix_turns_battle_id"), table_name="turns")

    op.drop_table("turns")
    op.drop_index(op.f("ix_battles_session_id"), table_name="battles")
    op.drop_index(op.f("ix_battles_model_b"), table_name="battles")
    op.drop_index(op.f("ix_battles_model_a"), table_name="battles")

    op.drop_table("battles")
    op.drop_table("sessions")
