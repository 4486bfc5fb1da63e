"""The arena's HTTP request and response bodies."""

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, WrapSerializer, field_validator

from vlarena.execution.schemas import ModelCard
from vlarena.httpjson import ErrorBody, unstorable

Choice = Literal["a", "b", "tie", "both_bad"]
MAX_REASON_CHARS = 280  # a vote's free-text reason
TurnStatus = Literal["queued", "running", "done", "failed"]
BattleStatus = Literal["new", "queued", "running", "ready", "failed", "voted"]


def _compact(body: Any) -> Any:
    if isinstance(body, dict) and body.get("retry_after_s") is None:
        body.pop("retry_after_s", None)
    return body


# An error body as the API answers errors: retry_after_s only where a retry may help. (A
# lambda, as a serializer without a return type keeps ErrorBody's schema.)
TurnError = Annotated[ErrorBody, WrapSerializer(lambda error, handler: _compact(handler(error)))]


class SessionOut(BaseModel):
    session_id: str
    token: str  # send as `Authorization: Bearer <token>`; shown once


class BattleCreate(BaseModel):
    scene_id: str = Field("table", min_length=1, max_length=50)


class TurnCreate(BaseModel):
    instruction: str = Field(min_length=1, max_length=500)  # the arena's own limit is lower


class VoteCreate(BaseModel):
    choice: Choice
    score_a: int | None = Field(None, ge=0, le=100)  # optional: how far side a got, 0-100
    score_b: int | None = Field(None, ge=0, le=100)  # optional: how far side b got, 0-100
    reason: str | None = Field(None, max_length=MAX_REASON_CHARS)  # optional, free text

    @field_validator("reason")
    @classmethod
    def _trimmed(cls, value: str | None) -> str | None:
        """Surrounding space dropped; a blank reason is no reason."""
        if value is not None and unstorable(value):
            raise ValueError("must not hold control characters")
        return value.strip() or None if value is not None else None


class EpisodeOut(BaseModel):
    side: Literal["a", "b"]
    num_steps: int
    replay_url: str
    model_id: str | None  # hidden (null) until the battle's vote
    success: bool | None  # hidden (null) until the vote; also null if no task matched


class TurnOut(BaseModel):
    number: int
    instruction: str
    seed: int
    max_steps: int
    status: TurnStatus
    task: str | None = None  # the task kind its instruction asks for, once run (null: free-form)
    queue_position: int | None  # 1 = next to run; null unless queued
    # While running: the steps both episodes have done (the slower side's count; a count per
    # side would tell the hidden models apart by speed, which their cards publish).
    steps_done: int | None = None
    error: TurnError | None
    episodes: list[EpisodeOut]
    created_at: datetime
    finished_at: datetime | None


class BattleOut(BaseModel):
    battle_id: str
    url: str
    scene_id: str
    status: BattleStatus
    created_at: datetime
    max_turns: int
    turns: list[TurnOut]
    model_a: str | None  # hidden until the vote
    model_b: str | None
    vote: Choice | None
    score_a: int | None = None  # the vote's progress scores and reason, if it gave them
    score_b: int | None = None
    reason: str | None = None


class SceneOut(BaseModel):
    scene_id: str
    examples: list[str]  # instructions the scene's tasks understand
    manifest_url: str  # its MJCF and meshes, for the browser replay


class Interval(BaseModel):
    value: float | None  # null without data
    ci_low: float
    ci_high: float
    n: int


class RatingOut(BaseModel):
    model: str
    rating: float  # Bradley-Terry on the Elo-like scale
    ci_low: float
    ci_high: float
    rank: int  # 1 + models whose interval lies wholly above this one's
    elo: float  # online Elo preview (vote order)
    battles: int  # voted battles (open ones stay out: they would reveal their models)
    wins: int
    ties: int  # ties and both-bad
    losses: int
    sim_success: Interval  # share of its voted episodes that succeeded in simulation (Wilson)
    agreement: Interval  # its a/b-voted battles whose sim successes differ: vote went with sim
    provisional: bool  # fewer votes than the board's `provisional_votes`: rating not settled


class MatrixOut(BaseModel):
    """Head to head, in the board's order: row model against column model."""

    models: list[str]
    battles: list[list[int]]  # voted battles between the two
    win_rate: list[list[float | None]]  # row's wins plus half its ties, per battle; null: none


class LeaderboardOut(BaseModel):
    task: str | None  # the task kind this board is filtered by (null: every battle)
    scene: str | None  # the scene it is filtered by (null: every scene)
    task_kinds: list[str]  # the task filters there are
    scene_ids: list[str]  # the scene filters there are
    provisional_votes: int  # a rating with fewer votes than this is provisional
    ratings: list[RatingOut]
    matrix: MatrixOut
    votes: int
    tie_parameter: float | None  # Davidson's nu
    bootstrap_rounds: int
    agreement: Interval  # votes that picked the side with more sim successes, where they differ
    computed_at: datetime
    compute_ms: float


class Replay(BaseModel):
    """What a browser needs to replay one episode; identity and outcome after the vote."""

    battle_id: str
    turn: int
    side: Literal["a", "b"]
    scene_id: str
    robot_id: str
    instruction: str
    seed: int
    mujoco_version: str
    initial_qpos: list[float]
    qpos: list[list[float]]  # the whole model's qpos after each step (robot and objects)
    time: list[float]
    actions: list[list[float]]
    num_steps: int
    model_id: str | None  # hidden until the vote
    success: bool | None
    revealed: dict[str, Any] | None  # after the vote: metadata and timing


class ModelCardOut(ModelCard):
    """A model's card as the execution service gives it, with its record in this arena."""

    available: bool  # false: the execution service could not give its card just now
    latency_ms: float | None  # median model call over its voted episodes here (null: none)
    latency_episodes: int
    rating: RatingOut | None  # its row of the overall leaderboard (null: no vote yet)
