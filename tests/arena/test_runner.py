"""The turn runner: a refusal that comes only when an episode runs names nothing hidden."""

from collections.abc import Callable
from pathlib import Path
from typing import cast

import pytest

from tests.arena.conftest import arena_settings
from vlarena.arena.client import ExecutionClient
from vlarena.arena.storage.database import make_engine, session_factory
from vlarena.arena.usecases.runner import LocalRunner
from vlarena.arena.views import hidden
from vlarena.errors import ExecutionFailedError, InvalidRequestError
from vlarena.execution.schemas import ExecuteRequest, ExecuteResponse


class Refusing:
    """An execution service that accepted the check but refuses the episode when it starts."""

    async def execute(
        self, request: ExecuteRequest, on_progress: Callable[[int], None] | None = None
    ) -> ExecuteResponse:
        raise InvalidRequestError(
            f"model {request.model_id!r} cannot run here: it needs cameras ['top']"
        )


async def test_a_refusal_at_run_time_is_a_generic_failure(tmp_path: Path) -> None:
    settings = arena_settings(f"sqlite+aiosqlite:///{tmp_path / 'arena.db'}", "http://x")
    engine = make_engine(settings.database_url)
    runner = LocalRunner(settings, session_factory(engine), cast(ExecutionClient, Refusing()))
    request = ExecuteRequest(
        model_id="vla-b", robot_id="franka", scene_id="table", instruction="touch the red cube"
    )
    try:
        with pytest.raises(ExecutionFailedError) as err:
            await hidden(("vla-a", "vla-b"), runner._episode("turn", "b", request))
    finally:
        await engine.dispose()
    assert "cameras" not in str(err.value)  # what the model needs would tell the sides apart
    assert "vla-b" not in str(err.value)
