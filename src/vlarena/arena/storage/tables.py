"""The arena's tables: sessions, battles, turns, episodes and votes (one database for all).

Episodes live beside the rest (ADR-003's MongoDB is replaced): the execution service's
response is a JSON document, JSONB on PostgreSQL.
"""

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import JSON, ForeignKey, String, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import DateTime

Document = JSON().with_variant(JSONB(), "postgresql")


def utcnow() -> datetime:
    return datetime.now(UTC)


def aware(moment: datetime) -> datetime:
    """SQLite hands timestamps back without their zone; they were written in UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: DateTime(timezone=True),
        dict[str, Any]: Document,
    }


class SessionRow(Base):
    """An anonymous visitor: a bearer token (stored hashed) that owns battles and votes."""

    __tablename__ = "sessions"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    ip: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class BattleRow(Base):
    """Two hidden models (sides a and b) compared on the same scene, turn by turn."""

    __tablename__ = "battles"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id"), index=True)
    scene_id: Mapped[str] = mapped_column(String(50))
    model_a: Mapped[str] = mapped_column(String(200), index=True)
    model_b: Mapped[str] = mapped_column(String(200), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    turns: Mapped[list["TurnRow"]] = relationship(
        back_populates="battle", order_by="TurnRow.number", lazy="joined"
    )
    vote: Mapped["VoteRow | None"] = relationship(back_populates="battle", lazy="joined")


class TurnRow(Base):
    """One instruction run by both models on one seed; created once per idempotency key."""

    __tablename__ = "turns"
    __table_args__ = (
        UniqueConstraint("battle_id", "number"),
        UniqueConstraint("battle_id", "idempotency_key"),
    )
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    battle_id: Mapped[str] = mapped_column(ForeignKey("battles.id"), index=True)
    number: Mapped[int]  # 1, 2, ... within the battle
    instruction: Mapped[str] = mapped_column(String(500))
    seed: Mapped[int]
    max_steps: Mapped[int]
    status: Mapped[str] = mapped_column(String(16), index=True)  # queued|running|done|failed
    error: Mapped[dict[str, Any] | None]  # {"error": ..., "detail": ...} when failed
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    battle: Mapped[BattleRow] = relationship(back_populates="turns")
    episodes: Mapped[list["EpisodeRow"]] = relationship(
        back_populates="turn", order_by="EpisodeRow.side", lazy="joined"
    )


class EpisodeRow(Base):
    """One model's episode of a turn: the execution service's response, kept whole."""

    __tablename__ = "episodes"
    __table_args__ = (UniqueConstraint("turn_id", "side"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    turn_id: Mapped[str] = mapped_column(ForeignKey("turns.id"), index=True)
    side: Mapped[str] = mapped_column(String(1))  # "a" or "b"
    model_id: Mapped[str] = mapped_column(String(200), index=True)
    success: Mapped[bool | None]  # None: the instruction matched no task
    num_steps: Mapped[int]
    duration_ms: Mapped[float]
    data: Mapped[dict[str, Any]] = mapped_column(deferred=True)  # the whole ExecuteResponse
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    turn: Mapped[TurnRow] = relationship(back_populates="episodes")


class VoteRow(Base):
    """The one vote of a battle: a, b, tie or both_bad."""

    __tablename__ = "votes"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    battle_id: Mapped[str] = mapped_column(ForeignKey("battles.id"), unique=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id"), index=True)
    choice: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    battle: Mapped[BattleRow] = relationship(back_populates="vote")
