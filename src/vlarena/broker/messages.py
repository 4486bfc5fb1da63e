"""What travels on the turn queue: a turn to run (`TurnJob`) and how it went (`TurnResult`)."""

from typing import Self

from pydantic import BaseModel, ConfigDict, Field

from vlarena.execution.schemas import ExecuteRequest, ExecuteResponse
from vlarena.httpjson import ErrorBody


class TurnJob(BaseModel):
    """A stored turn: both sides' episode requests (same scene, instruction, seed, budget)."""

    model_config = ConfigDict(frozen=True)

    turn_id: str = Field(min_length=1, max_length=32)
    requests: tuple[ExecuteRequest, ExecuteRequest]  # sides a and b


class TurnResult(BaseModel):
    """Both episodes of a turn, or why it failed; `worker` says which worker sent it."""

    model_config = ConfigDict(frozen=True)

    turn_id: str = Field(min_length=1, max_length=32)
    worker: str
    episodes: tuple[ExecuteResponse, ExecuteResponse] | None = None  # sides a and b
    error: ErrorBody | None = None

    @classmethod
    def failed(cls, turn_id: str, worker: str, error: ErrorBody) -> Self:
        return cls(turn_id=turn_id, worker=worker, error=error)
