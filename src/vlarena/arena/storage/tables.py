"""The arena's tables: sessions, battles, turns, episodes and votes (one database for all).

Episodes live beside the rest, in the same database: each is the execution service's response
kept whole as a JSON document (JSONB on PostgreSQL), read back as that response's model.
"""

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import JSON, Dialect, ForeignKey, String, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import DateTime, TypeDecorator, TypeEngine

from vlarena.arena.schemas import MAX_REASON_CHARS
from vlarena.execution.schemas import ExecuteResponse

Document = JSON().with_variant(JSONB(), "postgresql")
MAX_TASK_KIND_CHARS = 20  # "next_to" and the like


class EpisodeDocument(TypeDecorator[ExecuteResponse]):
    """An `ExecuteResponse` stored as its JSON (`model_dump(mode="json")`) in a JSON column.

    Plain dicts are accepted too (bulk inserts), validated on the way in like a model.
    """

    impl = JSON
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        return dialect.type_descriptor(JSONB() if dialect.name == "postgresql" else JSON())

    def process_bind_param(
        self, value: ExecuteResponse | dict[str, Any] | None, dialect: Dialect
    ) -> dict[str, Any] | None:
        if value is None:
            return None
        if not isinstance(value, ExecuteResponse):
            value = ExecuteResponse.model_validate(value)
        return value.model_dump(mode="json")

    def process_result_value(self, value: Any, dialect: Dialect) -> ExecuteResponse | None:
        return None if value is None else ExecuteResponse.model_validate(value)


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
    error: Mapped[dict[str, Any] | None]  # an ErrorBody (error, detail[, retry_after_s]) if failed
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    battle: Mapped[BattleRow] = relationship(back_populates="turns")
    episodes: Mapped[list["EpisodeRow"]] = relationship(
        back_populates="turn", order_by="EpisodeRow.side", lazy="joined"
    )

    @property
    def task_kind(self) -> str | None:
        """The task kind its instruction asks for, once an episode ran (None: free-form)."""
        return next((e.task_kind for e in self.episodes if e.task_kind), None)


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
    # None: free-form
    task_kind: Mapped[str | None] = mapped_column(String(MAX_TASK_KIND_CHARS), index=True)
    inference_ms: Mapped[float | None]  # median model call of the episode (None: no call)
    data: Mapped[ExecuteResponse] = mapped_column(EpisodeDocument(), deferred=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    turn: Mapped[TurnRow] = relationship(back_populates="episodes")


class VoteRow(Base):
    """The one vote of a battle: a, b, tie or both_bad, with optional scores and reason."""

    __tablename__ = "votes"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    battle_id: Mapped[str] = mapped_column(ForeignKey("battles.id"), unique=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id"), index=True)
    choice: Mapped[str] = mapped_column(String(8))
    score_a: Mapped[int | None]  # how far side a got, 0-100
    score_b: Mapped[int | None]
    reason: Mapped[str | None] = mapped_column(String(MAX_REASON_CHARS))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    battle: Mapped[BattleRow] = relationship(back_populates="vote")
