"""Faults: the execution service dies mid-battle, the arena restarts, the queue fills up."""

import time
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from tests.arena.conftest import (
    StartArena,
    execution_process,
    in_database,
    login,
    wait_turns,
)
from tests.loopback import RunningServer, serve_in_thread
from vlarena.arena.storage.tables import TurnRow
from vlarena.execution.app import create_app as create_execution
from vlarena.execution.settings import ExecutionSettings
from vlarena.testing import free_port

SLOW = "vla-flow-small-random"  # the small preset, one model call per step: seconds per episode
SLOW_ENV = {"VLA_EXEC_PRESETS": "vla-flow:small", "VLA_EXEC_HORIZON": "1"}


def turn(
    client: httpx.Client,
    battle_id: str,
    auth: dict[str, str],
    key: str | None = None,
    instruction: str = "touch the red cube",
) -> httpx.Response:
    headers = auth | ({"Idempotency-Key": key} if key else {})
    return client.post(
        f"/api/battles/{battle_id}/turns", json={"instruction": instruction}, headers=headers
    )


def wait_status(client: httpx.Client, battle_id: str, status: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while client.get(f"/api/battles/{battle_id}").json()["status"] != status:
        assert time.monotonic() < deadline, f"battle never became {status}"
        time.sleep(0.02)


@pytest.mark.slow
def test_execution_service_stopped_mid_battle(start_arena: StartArena) -> None:
    service = execution_process(free_port(), **SLOW_ENV)
    service.start()
    try:
        client = start_arena(
            server_url=service.url,
            models=f"scripted-expert,{SLOW}",
            max_steps=120,
            retry_attempts=2,
            breaker_failures=2,
            breaker_reset_s=1.0,
        )
        auth = login(client)
        battle_id = client.post("/api/battles", json={}, headers=auth).json()["battle_id"]
        assert turn(client, battle_id, auth, "t1").status_code == 202
        assert wait_turns(client, battle_id)["status"] == "ready"

        assert turn(client, battle_id, auth, "t2").status_code == 202
        wait_status(client, battle_id, "running")
        time.sleep(0.5)
        service.kill()  # mid-episode
        battle = wait_turns(client, battle_id)
        assert battle["status"] == "failed"
        failed = battle["turns"][1]
        assert failed["error"]["error"] == "execution_unavailable"
        assert SLOW not in failed["error"]["detail"]  # still anonymous

        for _ in range(2):  # a client retrying its request: 503 each time, no turn added
            reply = turn(client, battle_id, auth, "t3")
            assert reply.status_code == 503, reply.text
            assert reply.json()["error"] == "execution_unavailable"
            assert int(reply.headers["Retry-After"]) >= 1
        assert client.get("/api/health").json()["execution"][0]["breaker"] in ("open", "half_open")
        assert len(client.get(f"/api/battles/{battle_id}").json()["turns"]) == 2

        service.start()
        time.sleep(1.1)  # past breaker_reset_s: the next call is the half-open probe
        assert turn(client, battle_id, auth, "t3").status_code == 202
        battle = wait_turns(client, battle_id)
        assert [t["status"] for t in battle["turns"]] == ["done", "failed", "done"]
        assert turn(client, battle_id, auth, "t3").status_code == 200  # the retry adds nothing
        health = client.get("/api/health").json()["execution"][0]
        assert health["breaker"] == "closed"
        assert health["breaker_opened"] >= 1

        vote = client.post(f"/api/battles/{battle_id}/vote", json={"choice": "b"}, headers=auth)
        assert vote.status_code == 200
        assert client.get("/api/leaderboard").json()["votes"] == 1
        episodes = client.get("/api/export/episodes").text.splitlines()
        kept = len(battle["turns"][1]["episodes"])  # the expert may have finished before the kill
        assert len(episodes) == 4 + kept
    finally:
        service.kill()


@pytest.fixture(scope="module")
def slow_execution() -> Iterator[RunningServer]:
    settings = ExecutionSettings(port=0, presets="vla-flow:small", horizon=1, shipped_models=False)
    server = serve_in_thread(create_execution(settings))
    yield server
    server.stop()


@pytest.mark.slow
def test_the_queue_is_bounded_and_shows_positions(
    start_arena: StartArena, slow_execution: RunningServer
) -> None:
    client = start_arena(
        server_url=slow_execution.url,
        models=f"scripted-expert,{SLOW}",
        max_steps=60,
        max_running_turns=1,
        max_queued_turns=1,
    )
    auth = login(client)
    battles = [
        client.post("/api/battles", json={}, headers=auth).json()["battle_id"] for _ in range(3)
    ]
    first = turn(client, battles[0], auth)
    second = turn(client, battles[1], auth, key="second")
    third = turn(client, battles[2], auth)
    assert first.status_code == second.status_code == 202
    assert second.json()["turns"][0]["queue_position"] == 1
    assert second.json()["status"] == "queued"
    assert third.status_code == 503
    assert third.json()["error"] == "busy"
    repeat = turn(client, battles[1], auth, key="second")  # full, but a repeat is not a new turn
    assert repeat.status_code == 200
    assert len(repeat.json()["turns"]) == 1
    assert client.get("/api/health").json()["turns"] == {
        "running": 1,
        "queued": 1,
        "queue": "local",
    }
    deadline = time.monotonic() + 30  # the running turn reports the steps both sides did
    while not (done := client.get(f"/api/battles/{battles[0]}").json()["turns"][0]["steps_done"]):
        assert time.monotonic() < deadline, done
        time.sleep(0.05)
    assert 0 < done <= 60
    for battle_id in battles[:2]:
        ready = wait_turns(client, battle_id)
        assert ready["status"] == "ready"
        assert ready["turns"][0]["steps_done"] is None
    assert client.get(f"/api/battles/{battles[2]}").json()["status"] == "new"
    assert turn(client, battles[2], auth).status_code == 202


def set_turn_status(database_url: str, status: str) -> list[tuple[str, str]]:
    """Write every turn's status straight into the database; returns the previous state."""

    async def overwrite(connection: AsyncConnection) -> list[tuple[str, str]]:
        rows = (await connection.execute(select(TurnRow.status, TurnRow.error))).all()
        await connection.execute(update(TurnRow).values(status=status, error=None))
        return [(s, (e or {}).get("detail", "")) for s, e in rows]

    return in_database(database_url, overwrite)


@pytest.mark.slow
def test_a_restart_marks_unfinished_turns_failed(
    start_arena: StartArena, database_url: str, slow_execution: RunningServer
) -> None:
    client = start_arena(
        server_url=slow_execution.url, models=f"scripted-expert,{SLOW}", max_steps=150
    )
    auth = login(client)
    battle_id = client.post("/api/battles", json={}, headers=auth).json()["battle_id"]
    turn(client, battle_id, auth)
    wait_status(client, battle_id, "running")
    start_arena.stop(client)  # a clean stop: the running turn is marked failed on the way out
    assert set_turn_status(database_url, "running") == [
        ("failed", "the arena stopped before the turn finished")
    ]
    # As if the process had been killed: the turn is still "running" in the database.
    again = start_arena(server_url=slow_execution.url, max_steps=10)
    battle = again.get(f"/api/battles/{battle_id}").json()
    assert battle["status"] == "failed"
    assert battle["turns"][0]["error"] == {
        "error": "interrupted",
        "detail": "the arena restarted before the turn finished",
    }
    assert turn(again, battle_id, auth).status_code == 202  # the battle goes on
