"""Background episodes, kept by id for polling: every queued or running one, and the newest
finished ones up to a bound."""

import asyncio
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Literal

from vlarena.errors import UnknownNameError
from vlarena.execution.schemas import ExecuteResponse
from vlarena.httpjson import ErrorBody

JobStatus = Literal["queued", "running", "done", "failed"]


@dataclass
class Job:
    """One background episode: its progress, then its result or its error."""

    max_steps: int
    status: JobStatus = "queued"
    steps_done: int = 0
    result: ExecuteResponse | None = None
    error: ErrorBody | None = None
    task: asyncio.Task[None] | None = field(default=None, repr=False)  # keeps it alive
    cancelled: bool = False  # set to stop the simulation at its next step

    @property
    def active(self) -> bool:
        return self.status in ("queued", "running")


class JobStore:
    """Jobs by id, oldest first. Beyond `capacity`, the oldest go while they are finished."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._jobs: OrderedDict[str, Job] = OrderedDict()

    def add(self, job: Job) -> str:
        """Keep `job` under a fresh id, dropping old finished jobs; returns the id."""
        job_id = uuid.uuid4().hex
        self._jobs[job_id] = job
        while len(self._jobs) > self.capacity:
            oldest = next(iter(self._jobs))
            if self._jobs[oldest].active:
                break
            self._jobs.pop(oldest)
        return job_id

    def get(self, job_id: str) -> Job:
        """The job with this id; UnknownNameError when there is none (or no longer)."""
        job = self._jobs.get(job_id)
        if job is None:
            raise UnknownNameError("episode", job_id, [])
        return job
