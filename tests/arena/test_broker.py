"""Past one machine: two arena processes and two execution workers on one durable turn queue
(a private redis-server, PostgreSQL), with processes and the broker killed with SIGKILL."""

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from tests.arena.conftest import execution_process, in_database, login
from vlarena.arena.storage.tables import EpisodeRow, TurnRow, VoteRow
from vlarena.testing import RedisProcess, ServiceProcess, free_port, scratch_postgres

pytestmark = pytest.mark.slow
# One model call per step and 100 steps: about two seconds a turn, long enough to die in.
MODELS = "vla-flow-small-random,vla-ar-tiny-random"
PRESETS = "vla-flow:small,vla-ar:tiny"
PREFIX = "test"


class Stack:
    """A broker, a database, two execution workers and two arena processes, all on loopback."""

    def __init__(self, broker: RedisProcess, database_url: str) -> None:
        self.broker = broker
        self.database_url = database_url
        queue = {
            "VLA_QUEUE_URL": broker.url,
            "VLA_QUEUE_PREFIX": PREFIX,
            "VLA_QUEUE_LEASE_S": "2",
            "VLA_QUEUE_SWEEP_S": "3",
            "VLA_QUEUE_POLL_S": "0.2",
        }
        self.workers = [
            execution_process(free_port(), VLA_EXEC_PRESETS=PRESETS, VLA_EXEC_HORIZON="1", **queue)
            for _ in range(2)
        ]
        servers = ",".join(w.url for w in self.workers)
        # The second arena is itself two processes (`--workers 2`).
        self.arenas = [
            ServiceProcess(
                "arena",
                port,
                "/api/health",
                *args,
                VLA_ARENA_PORT=str(port),
                VLA_ARENA_DATABASE_URL=database_url,
                VLA_SERVER_URL=servers,
                VLA_ARENA_MODELS=MODELS,
                VLA_ARENA_MAX_STEPS="100",
                VLA_ARENA_MAX_QUEUED_TURNS="40",
                VLA_ARENA_BOOTSTRAP_ROUNDS="20",
                VLA_ARENA_LEADERBOARD_TTL_S="0",
                VLA_ARENA_RETRY_INITIAL_S="0.05",
                VLA_ARENA_RETRY_MAX_S="0.2",
                VLA_ARENA_RATE_LIMIT_STORAGE=f"async+redis://127.0.0.1:{broker.port}",
                **{f"VLA_ARENA_{k}_RATE": "10000/minute" for k in ("BATTLE", "TURN", "VOTE")},
                VLA_ARENA_SESSION_RATE="10000/minute",
                **queue,
            )
            for port, args in ((free_port(), ()), (free_port(), ("--workers", "2")))
        ]
        self.clients = [httpx.Client(base_url=a.url, timeout=30) for a in self.arenas]

    def ensure_up(self) -> None:
        """Start whatever is not running (every process at once: each takes seconds)."""
        if self.broker.process is None:
            self.broker.start()
        down = [p for p in (*self.workers, *self.arenas) if p.process is None]
        with ThreadPoolExecutor(len(down) or 1) as pool:
            list(pool.map(lambda p: p.start(), down))

    def stop(self) -> None:
        for client in self.clients:
            client.close()
        for process in (*self.arenas, *self.workers):
            process.kill()

    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.broker.url, decode_responses=True)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    broker = RedisProcess(str(tmp_path_factory.mktemp("redis")))
    with scratch_postgres() as database_url:
        built = Stack(broker, database_url)
        try:
            built.ensure_up()
            yield built
        finally:
            built.stop()
            broker.kill()


def new_turn(client: httpx.Client) -> tuple[str, dict[str, str]]:
    """A new session's battle with one turn added; (battle id, auth header)."""
    auth = login(client)
    reply = client.post("/api/battles", json={"scene_id": "table"}, headers=auth)
    assert reply.status_code == 201, reply.text
    battle_id = reply.json()["battle_id"]
    reply = client.post(
        f"/api/battles/{battle_id}/turns", json={"instruction": "touch the red cube"}, headers=auth
    )
    assert reply.status_code == 202, reply.text
    return battle_id, auth


def battle(client: httpx.Client, battle_id: str) -> dict[str, Any]:
    reply = client.get(f"/api/battles/{battle_id}")
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


def wait_all(client: httpx.Client, battle_ids: list[str], timeout_s: float = 240) -> None:
    deadline = time.monotonic() + timeout_s
    for battle_id in battle_ids:
        while battle(client, battle_id)["status"] in ("queued", "running"):
            assert time.monotonic() < deadline, f"battle {battle_id} never finished"
            time.sleep(0.2)


def stored(database_url: str) -> dict[str, Any]:
    """Turns by status, episodes per turn, and votes, straight from the database."""

    async def read(connection: AsyncConnection) -> dict[str, Any]:
        query = select(TurnRow.status, func.count()).group_by(TurnRow.status)
        statuses: dict[str, int] = dict((await connection.execute(query)).all())
        query = select(EpisodeRow.turn_id, func.count()).group_by(EpisodeRow.turn_id)
        per_turn: dict[str, int] = dict((await connection.execute(query)).all())
        votes = (await connection.execute(select(func.count()).select_from(VoteRow))).scalar_one()
        return {"statuses": statuses, "episodes": per_turn, "votes": votes}

    return in_database(database_url, read)


def running_workers(stack: Stack, broker: redis.Redis) -> list[ServiceProcess]:
    """Workers that hold a lease on a turn with steps done."""
    steps: Any = broker.hgetall(f"{PREFIX}:progress")
    leases: Any = broker.xpending_range(f"{PREFIX}:turns", "workers", "-", "+", 10)
    found = []
    for lease in leases:
        entry: Any = broker.xrange(f"{PREFIX}:turns", lease["message_id"], lease["message_id"])
        if entry and int(steps.get(entry[0][1]["turn"], 0)) > 0:
            found += [w for w in stack.workers if lease["consumer"].endswith(f"-{w.pid}")]
    return found


def test_twenty_battles_in_flight_and_a_worker_killed_mid_turn(stack: Stack) -> None:
    stack.ensure_up()
    before = stored(stack.database_url)
    battles = [(stack.clients[i % 2], *new_turn(stack.clients[i % 2])) for i in range(20)]
    ids = [battle_id for _, battle_id, _ in battles]
    # The rest wait in order, and their places reach the API.
    deadline = time.monotonic() + 10
    while None in (
        places := [battle(stack.clients[1], b)["turns"][0]["queue_position"] for b in ids[-5:]]
    ):
        assert time.monotonic() < deadline, places
        time.sleep(0.05)
    # First come, first served (read one battle at a time: the queue may move between reads).
    assert places == sorted(places), places
    assert places[0] > 1, places
    # Kill a worker that holds a turn it has started (steps done), mid-turn.
    broker = stack.redis()
    deadline = time.monotonic() + 60
    while not (running := running_workers(stack, broker)):
        assert time.monotonic() < deadline, "no worker started a turn"
        time.sleep(0.05)
    running[0].kill()
    wait_all(stack.clients[0], ids)

    after = stored(stack.database_url)
    for client, battle_id, auth in battles:
        shown = battle(client, battle_id)
        assert [t["status"] for t in shown["turns"]] == ["done"], shown
        assert [e["side"] for e in shown["turns"][0]["episodes"]] == ["a", "b"]
        reply = client.post(f"/api/battles/{battle_id}/vote", json={"choice": "a"}, headers=auth)
        assert reply.status_code == 200, reply.text
    after = stored(stack.database_url)
    assert after["statuses"].get("done", 0) - before["statuses"].get("done", 0) == 20
    assert set(after["statuses"]) == {"done"}  # nothing failed, nothing left active
    assert set(after["episodes"].values()) == {2}  # one pair per turn, whatever the retries
    assert after["votes"] - before["votes"] == 20
    for client in stack.clients:  # both processes see the same board
        board = client.get("/api/leaderboard").json()
        assert board["votes"] == after["votes"]
    assert broker.xlen(f"{PREFIX}:turns") == 0
    assert broker.xlen(f"{PREFIX}:results") == 0
    assert broker.hlen(f"{PREFIX}:live") == 0


def test_an_arena_killed_with_queued_turns_the_other_finishes_them(stack: Stack) -> None:
    stack.ensure_up()
    ids = [new_turn(stack.clients[0])[0] for _ in range(6)]
    stack.arenas[0].kill()  # its turns are queued or running; its pending results are claimed
    survivor = stack.clients[1]
    assert survivor.get("/api/health").json()["turns"]["queue"] == "up"
    ids.append(new_turn(survivor)[0])  # and it keeps taking new work
    wait_all(survivor, ids)
    assert all(battle(survivor, b)["status"] == "ready" for b in ids)
    assert set(stored(stack.database_url)["episodes"].values()) == {2}


def test_broker_down_is_a_clear_503_and_work_resumes_after(stack: Stack) -> None:
    stack.ensure_up()
    client = stack.clients[0]
    early = new_turn(client)[0]  # queued or running when the broker dies
    stack.broker.kill()
    auth = login(client)
    accepted = []  # turns stored before the arena noticed: stored, queued by the sweep later
    deadline = time.monotonic() + 20
    while True:
        reply = client.post("/api/battles", json={"scene_id": "table"}, headers=auth)
        battle_id = reply.json()["battle_id"]
        url = f"/api/battles/{battle_id}/turns"
        reply = client.post(url, json={"instruction": "touch the red cube"}, headers=auth)
        if reply.status_code == 503:
            break
        assert reply.status_code == 202, reply.text
        accepted.append(battle_id)
        assert time.monotonic() < deadline, "no 503 while the broker is down"
        time.sleep(0.2)
    assert reply.json()["error"] == "queue_unavailable"
    assert "Retry-After" in reply.headers
    assert battle(client, early)["turns"]  # reads still work
    assert client.get("/api/health").json()["turns"]["queue"] == "down"

    stack.broker.start()  # same port, same append-only file
    deadline = time.monotonic() + 30
    while (
        reply := client.post(url, json={"instruction": "touch the red cube"}, headers=auth)
    ).status_code == 503:
        assert time.monotonic() < deadline, "the arena never saw the broker come back"
        time.sleep(0.2)
    assert reply.status_code == 202, reply.text
    finished = [early, battle_id, *accepted]
    wait_all(client, finished)
    assert [battle(client, b)["status"] for b in finished] == ["ready"] * len(finished)
    assert set(stored(stack.database_url)["episodes"].values()) == {2}
