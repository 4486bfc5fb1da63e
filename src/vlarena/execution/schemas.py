"""The execution service's contract (its JSON bodies), importable without MuJoCo or torch."""

from typing import Annotated, Literal

from annotated_types import Ge, Le
from pydantic import BaseModel, BeforeValidator, Field

from vlarena.httpjson import ErrorBody


def _number(value: object) -> object:
    if isinstance(value, bool | str):
        raise ValueError("must be a JSON number")
    return value


# After an int's bounds: JSON integers are 3 or 3.0 (as in JSON Schema), never true or "3".
NUMBER_ONLY = BeforeValidator(_number)


class ExecuteRequest(BaseModel):
    """Which model runs on which robot, in which scene, following which instruction; plus an
    optional seed and step budget."""

    model_id: str = Field(min_length=1, max_length=200)
    robot_id: str = Field(min_length=1, max_length=50)
    scene_id: str = Field(min_length=1, max_length=50)
    instruction: str = Field(min_length=1, max_length=500)
    seed: Annotated[int, Ge(0), Le(2**31 - 1), NUMBER_ONLY] | None = None  # same seed, same start
    max_steps: Annotated[int, Ge(1), NUMBER_ONLY] | None = None  # default and cap: the settings


class State(BaseModel):
    qpos: list[float]  # the robot's joints
    qvel: list[float]
    time: float
    inference_ms: float  # latency of the model call that produced this step's action (0: reused)
    scene_qpos: list[float]  # the whole model's qpos (robot and objects), for replay


class Metadata(BaseModel):
    num_steps: int
    max_steps: int
    early_termination: bool


class Timing(BaseModel):
    inference_ms: float  # total model time over the episode
    simulation_ms: float  # the rest: physics, rendering, bookkeeping


class TaskOut(BaseModel):
    kind: str | None
    color: str | None
    other: str | None
    side: str | None


class ExecuteResponse(BaseModel):
    """The episode that ran: actions, states, duration_ms and metadata, its outcome, and what
    replays it."""

    actions: list[list[float]]
    states: list[State]
    duration_ms: float
    metadata: Metadata
    success: bool | None  # None: the instruction matched no task template
    seed: int
    model_id: str
    robot_id: str
    scene_id: str
    instruction: str
    task: TaskOut
    timing: Timing
    mujoco_version: str
    initial_qpos: list[float]  # the scene's full qpos at reset, for replay


class EpisodeStatus(BaseModel):
    episode_id: str
    status: Literal["queued", "running", "done", "failed"]
    steps_done: int
    max_steps: int
    result: ExecuteResponse | None = None
    error: ErrorBody | None = None


class TaskScore(BaseModel):
    """One task of a model's offline evaluation (`vlarena eval`)."""

    task: str
    successes: int
    episodes: int
    ci_low: float  # Wilson 95% interval of the success rate
    ci_high: float


class ModelCard(BaseModel):
    """What is known of a model the service runs: its contract, training, scores, provenance."""

    model_id: str
    kind: str  # checkpoint, preset, remote or expert
    family: str | None  # its policy type, e.g. vla-flow (null: not known)
    parameters: int | None
    version: str | None
    trained: str | None  # the checkpoint's training summary
    evaluation: list[TaskScore] = []  # its offline evaluation, if one came with it
    evaluated: str | None = None  # how that evaluation was run
    license: str | None = None
    source: str | None = None  # where it comes from: a homepage, a repository, a server
