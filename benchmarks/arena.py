"""Arena backend: API latency under 50 concurrent clients, leaderboard time at 10,000 votes,
and how fast both HTTP services refuse work under 4x overload."""

import asyncio
import contextlib
import random
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import uvicorn
from rich.progress import Progress
from sqlalchemy import insert
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from vlarena.arena.board import Board
from vlarena.arena.settings import ArenaSettings
from vlarena.arena.storage.database import make_engine, migrate, session_factory
from vlarena.arena.storage.tables import BattleRow, EpisodeRow, SessionRow, TurnRow, VoteRow
from vlarena.arena.usecases.sessions import token_hash
from vlarena.testing import ServiceProcess, free_port, scratch_postgres

CLIENTS = 50
VOTES = 10_000
MODELS = [f"model-{k}" for k in range(8)]
STRENGTH = dict(zip(MODELS, np.linspace(-1, 1, len(MODELS)), strict=True))
OPEN_BATTLES = 2_000  # unvoted battles with a finished turn: the vote phase's targets
TOKEN = "bench-token"
OVERLOAD = 4  # concurrent requests per place there is
RUNNING_TURNS, QUEUED_TURNS = 1, 4  # the overloaded arena's turn places
RUNNING_EPISODES, WAITING_EPISODES = 1, 1  # the overloaded execution service's episode slots


def tournament(n: int, rng: random.Random) -> list[tuple[str, str, str]]:
    """Votes of a tournament with known strengths (Davidson, nu = 0.3)."""
    out = []
    for _ in range(n):
        a, b = rng.sample(MODELS, 2)
        wa, wb = np.exp(STRENGTH[a]), np.exp(STRENGTH[b])
        tie = 0.3 * np.sqrt(wa * wb)
        u = rng.random() * (wa + wb + tie)
        out.append((a, b, "a" if u < wa else "b" if u < wa + wb else "tie"))
    return out


def _episode(side: str, model: str, steps: int = 40) -> dict[str, Any]:
    """An execution-service response of realistic size (qpos of 16, qvel of 15, 8-dim actions)."""
    state = {
        "qpos": [0.1] * 9,
        "qvel": [0.0] * 9,
        "time": 0.1,
        "inference_ms": 5.0,
        "scene_qpos": [0.1] * 30,
    }
    return {
        "actions": [[0.0] * 8] * steps,
        "states": [state] * steps,
        "duration_ms": 900.0,
        "metadata": {"num_steps": steps, "max_steps": 60, "early_termination": False},
        "success": side == "a",
        "seed": 1,
        "model_id": model,
        "robot_id": "franka",
        "scene_id": "table",
        "instruction": "touch the red cube",
        "task": {"kind": "touch", "color": "red", "other": None, "side": None},
        "timing": {"inference_ms": 200.0, "simulation_ms": 700.0},
        "mujoco_version": "3",
        "initial_qpos": [0.0] * 30,
    }


async def _seed(url: str) -> list[str]:
    """10,000 voted battles and 2,000 open ones (with both episodes); returns the open ids."""
    engine = make_engine(url)
    await migrate(engine)
    rng = random.Random(0)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    voted = tournament(VOTES, rng)
    battle_ids = [uuid.uuid4().hex for _ in range(VOTES + OPEN_BATTLES)]
    pairs = [(a, b) for a, b, _ in voted] + [
        tuple(rng.sample(MODELS, 2)) for _ in range(OPEN_BATTLES)
    ]
    async with engine.begin() as c:
        await c.execute(
            insert(SessionRow),
            [
                {
                    "id": "bench",
                    "token_sha256": token_hash(TOKEN),
                    "ip": "127.0.0.1",
                    "created_at": start,
                }
            ],
        )
        await c.execute(
            insert(BattleRow),
            [
                {
                    "id": i,
                    "session_id": "bench",
                    "scene_id": "table",
                    "model_a": a,
                    "model_b": b,
                    "created_at": start,
                }
                for i, (a, b) in zip(battle_ids, pairs, strict=True)
            ],
        )
        await c.execute(
            insert(VoteRow),
            [
                {
                    "id": uuid.uuid4().hex,
                    "battle_id": i,
                    "session_id": "bench",
                    "choice": choice,
                    "created_at": start + timedelta(seconds=k),
                }
                for k, (i, (_, _, choice)) in enumerate(zip(battle_ids, voted, strict=False))
            ],
        )
        open_ids = battle_ids[VOTES:]
        turns = [
            {
                "id": uuid.uuid4().hex,
                "battle_id": i,
                "number": 1,
                "seed": 1,
                "instruction": "touch the red cube",
                "max_steps": 60,
                "status": "done",
                "error": None,
                "idempotency_key": None,
                "created_at": start,
                "finished_at": start,
            }
            for i in open_ids
        ]
        await c.execute(insert(TurnRow), turns)
        await c.execute(
            insert(EpisodeRow),
            [
                {
                    "id": uuid.uuid4().hex,
                    "turn_id": t["id"],
                    "side": side,
                    "model_id": model,
                    "success": side == "a",
                    "num_steps": 40,
                    "duration_ms": 900.0,
                    "data": _episode(side, model),
                    "created_at": start,
                }
                for t, pair in zip(turns, pairs[VOTES:], strict=True)
                for side, model in zip("ab", pair, strict=True)
            ],
        )
    await engine.dispose()
    return open_ids


@contextmanager
def _service(command: str, health: str, env: dict[str, str]) -> Iterator[str]:
    """`vlarena COMMAND` in its own process with these settings; yields its base URL."""
    port = free_port()
    prefix = "VLA_ARENA_" if command == "arena" else "VLA_EXEC_"
    service = ServiceProcess(command, port, health, **env, **{f"{prefix}PORT": str(port)})
    service.start()
    try:
        yield service.url
    finally:
        service.stop()


def _arena(url: str, **env: str) -> contextlib.AbstractContextManager[str]:
    """`vlarena arena` on this database, rate limits out of the way."""
    rates = {f"VLA_ARENA_{kind}_RATE": "1000000/minute" for kind in ("BATTLE", "VOTE", "TURN")}
    return _service("arena", "/api/health", rates | {"VLA_ARENA_DATABASE_URL": url} | env)


async def _load(
    base: str, requests: int, make: Callable[[httpx.AsyncClient, int], Awaitable[httpx.Response]]
) -> tuple[list[float], float]:
    """`requests` calls from CLIENTS concurrent closed-loop clients: latencies (ms), req/s.

    Each client has its own connection (httpx's shared pool is unfair under 50-way load).
    """
    headers = {"Authorization": f"Bearer {TOKEN}"}
    clients = [
        httpx.AsyncClient(base_url=base, timeout=60, headers=headers) for _ in range(CLIENTS)
    ]
    counter = iter(range(requests))
    latencies: list[float] = []

    async def worker(client: httpx.AsyncClient) -> None:
        for k in counter:
            started = time.perf_counter()
            reply = await make(client, k)
            latencies.append((time.perf_counter() - started) * 1000)
            if reply.status_code >= 400:
                raise RuntimeError(f"{reply.status_code}: {reply.text}")

    try:
        await asyncio.gather(*(c.get("/api/health") for c in clients))  # connect first
        started = time.perf_counter()
        await asyncio.gather(*(worker(c) for c in clients))
        return latencies, requests / (time.perf_counter() - started)
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))


def _row(name: str, latencies: list[float], rate: float) -> str:
    p50, p99 = np.percentile(latencies, [50, 99])
    return f"| {name} | {len(latencies)} | {p50:.1f} | {p99:.1f} | {rate:.0f} |"


async def _api(base: str, open_ids: list[str], requests: int) -> list[str]:
    status_ids = open_ids[:200]
    status = await _load(base, requests, lambda c, k: c.get(f"/api/battles/{status_ids[k % 200]}"))
    vote = await _load(
        base,
        min(requests, len(open_ids)),
        lambda c, k: c.post(f"/api/battles/{open_ids[k]}/vote", json={"choice": "tie"}),
    )
    async with httpx.AsyncClient(base_url=base, timeout=120) as client:
        await client.get("/api/leaderboard")  # the first computation, timed separately below
    board = await _load(base, requests, lambda c, _: c.get("/api/leaderboard"))
    return [
        _row("battle status `GET /api/battles/{id}`", *status),
        _row("vote `POST /api/battles/{id}/vote`", *vote),
        _row("leaderboard `GET /api/leaderboard` (cached 2 s)", *board),
    ]


async def _board_compute(url: str) -> tuple[float, float]:
    """Seconds for the first computation (starts the fit thread) and a later one."""
    engine = make_engine(url)
    settings = ArenaSettings()
    board = Board(
        session_factory(engine),
        rounds=settings.bootstrap_rounds,
        ttl_s=0,
        scene_ids=settings.scene_ids,
        provisional_votes=settings.provisional_votes,
    )
    times = []
    for _ in range(2):
        started = time.perf_counter()
        await board.recompute()
        times.append(time.perf_counter() - started)
    await board.close()
    await engine.dispose()
    return times[0], times[1]


@contextmanager
def _stalled_execution() -> Iterator[str]:
    """An execution service whose episodes never finish (in a thread of this process): every
    turn the arena starts keeps its place, so the turn queue stays full."""

    async def models(_: Request) -> JSONResponse:
        return JSONResponse([{"model_id": m, "kind": "preset", "source": m} for m in MODELS[:2]])

    async def check(_: Request) -> JSONResponse:
        return JSONResponse({"max_steps": 60})

    async def start(_: Request) -> JSONResponse:
        return JSONResponse({"episode_id": "e", "status_url": "/episodes/e"}, 202)

    async def status(_: Request) -> JSONResponse:
        return JSONResponse({"episode_id": "e", "status": "running", "steps_done": 0})

    routes = [
        Route("/models", models),
        Route("/execute/check", check, methods=["POST"]),
        Route("/episodes", start, methods=["POST"]),
        Route("/episodes/{id}", status),
    ]
    config = uvicorn.Config(Starlette(routes=routes), port=free_port(), log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{config.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


async def _bursts(
    base: str,
    rounds: int,
    size: int,
    make: Callable[[httpx.AsyncClient, int], Awaitable[httpx.Response]],
    refill: Callable[[httpx.AsyncClient], Awaitable[None]],
) -> list[float]:
    """`rounds` bursts of `size` concurrent requests, each expected to be refused with 503;
    before each, `refill` takes whatever places have come free. Latencies in ms."""
    clients = [httpx.AsyncClient(base_url=base, timeout=60) for _ in range(size)]
    latencies: list[float] = []

    async def one(client: httpx.AsyncClient, k: int) -> None:
        started = time.perf_counter()
        reply = await make(client, k)
        latencies.append((time.perf_counter() - started) * 1000)
        if reply.status_code != 503 or "retry-after" not in reply.headers:
            raise RuntimeError(f"expected a 503 with Retry-After, got {reply.status_code}")

    try:
        await asyncio.gather(*(c.get("/openapi.json") for c in clients))  # connect first
        for _ in range(rounds):
            await refill(clients[0])
            await asyncio.gather(*(one(c, k) for k, c in enumerate(clients)))
        return latencies
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))


async def _overloaded_arena(base: str, rounds: int) -> tuple[list[float], list[float]]:
    """Turn requests refused with 503 busy while the turn queue is full, and battle reads
    made during those bursts (ms)."""
    size = OVERLOAD * (RUNNING_TURNS + QUEUED_TURNS)
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        token = (await client.post("/api/sessions")).json()["token"]
        client.headers["Authorization"] = f"Bearer {token}"
        made = [
            await client.post("/api/battles", json={})
            for _ in range(RUNNING_TURNS + QUEUED_TURNS + size)
        ]
        battles = [reply.json()["battle_id"] for reply in made]
        for battle in battles[: RUNNING_TURNS + QUEUED_TURNS]:  # fill every place
            reply = await client.post(f"/api/battles/{battle}/turns", json={"instruction": "wave"})
            if reply.status_code != 202:
                raise RuntimeError(f"turn not queued: {reply.status_code} {reply.text}")
        overload, reads = battles[RUNNING_TURNS + QUEUED_TURNS :], []

        async def turn(c: httpx.AsyncClient, k: int) -> httpx.Response:
            c.headers["Authorization"] = f"Bearer {token}"
            return await c.post(
                f"/api/battles/{overload[k]}/turns",
                json={"instruction": "wave"},
                headers={"Idempotency-Key": uuid.uuid4().hex},
            )

        async def read(c: httpx.AsyncClient) -> None:
            started = time.perf_counter()
            await c.get(f"/api/battles/{battles[0]}")
            reads.append((time.perf_counter() - started) * 1000)

        refused = await _bursts(base, rounds, size, turn, read)
    return refused, reads


async def _saturated_execution(base: str, rounds: int) -> list[float]:
    """/execute requests refused with 503 saturated while every episode slot is taken (ms)."""
    long = {
        "model_id": "scripted-expert",
        "robot_id": "franka",
        "scene_id": "table",
        "instruction": "wave for a long time",
        "max_steps": 500,
    }

    async def refill(client: httpx.AsyncClient) -> None:
        while (await client.post("/episodes", json=long)).status_code == 202:
            pass  # until the service is saturated

    async def execute(c: httpx.AsyncClient, _: int) -> httpx.Response:
        return await c.post("/execute", json=long | {"max_steps": 5})

    return await _bursts(
        base, rounds, OVERLOAD * (RUNNING_EPISODES + WAITING_EPISODES), execute, refill
    )


def _percentiles(latencies: list[float]) -> str:
    p50, p99 = np.percentile(latencies, [50, 99])
    return f"{len(latencies)} | {p50:.1f} | {p99:.1f}"


def _overload(rounds: int) -> list[str]:
    """Table rows: rejection latency of both services under OVERLOAD x their capacity."""
    rows = []
    execution_env = {
        "VLA_EXEC_PRESETS": "",
        "VLA_EXEC_SHIPPED_MODELS": "false",
        "VLA_EXEC_MAX_STEPS_CAP": "500",
        "VLA_EXEC_MAX_CONCURRENT_EPISODES": str(RUNNING_EPISODES),
        "VLA_EXEC_MAX_WAITING_EPISODES": str(WAITING_EPISODES),
    }
    with _service("execute", "/health", execution_env) as base:
        refused = asyncio.run(_saturated_execution(base, rounds))
    rows.append(f"| execution: `POST /execute` → 503 saturated | {_percentiles(refused)} |")
    places = {
        "VLA_ARENA_MAX_RUNNING_TURNS": str(RUNNING_TURNS),
        "VLA_ARENA_MAX_QUEUED_TURNS": str(QUEUED_TURNS),
        "VLA_ARENA_SESSION_RATE": "1000000/minute",
    }
    with _databases() as databases, _stalled_execution() as execution:
        for name, url in databases:
            with _arena(url, VLA_SERVER_URL=execution, **places) as base:
                busy, reads = asyncio.run(_overloaded_arena(base, rounds))
            rows.append(
                f"| {name}: `POST /api/battles/{{id}}/turns` → 503 busy | {_percentiles(busy)} |"
            )
            rows.append(
                f"| {name}: `GET /api/battles/{{id}}` during the bursts | {_percentiles(reads)} |"
            )
    return rows


@contextmanager
def _databases() -> Iterator[list[tuple[str, str]]]:
    with tempfile.TemporaryDirectory() as tmp, scratch_postgres() as postgres:
        yield [
            ("SQLite", f"sqlite+aiosqlite:///{Path(tmp) / 'arena.db'}"),
            ("PostgreSQL", postgres),
        ]


def run(samples: int, progress: Progress) -> str:
    """Markdown section for the arena backend."""
    requests = max(10 * samples, 500)
    task = progress.add_task("arena", total=3)
    overload_rows = _overload(max(samples, 5))
    progress.advance(task)
    api_rows, compute_rows = [], []
    with _databases() as databases:
        for name, url in databases:
            open_ids = asyncio.run(_seed(url))
            first, later = asyncio.run(_board_compute(url))
            compute_rows.append(f"| {name} | {first:.2f} s | {later:.2f} s |")
            with _arena(url) as base:
                rows = asyncio.run(_api(base, open_ids, requests))
            api_rows += [row.replace("| ", f"| {name}: ", 1) for row in rows]
            progress.advance(task)
    return "\n".join(
        [
            "## Arena backend (HTTP over loopback, arena in its own process)",
            "",
            f"{CLIENTS} concurrent closed-loop clients (one asyncio process; the arena is one "
            "uvicorn worker, so the two share this machine's 2 cores). The database holds "
            f"{VOTES:,} voted battles and {OPEN_BATTLES:,} open ones, each with two 40-step "
            "episodes. Rate limits raised out of the way. The leaderboard is computed once "
            "before its row (that computation is timed below); it is then served from memory for "
            "2 s, after which a changed database is recomputed in the background while the "
            "previous board is served.",
            "",
            "| endpoint | requests | p50 ms | p99 ms | req/s |",
            "|---|---:|---:|---:|---:|",
            *api_rows,
            "",
            f"Leaderboard computation at {VOTES:,} votes, {len(MODELS)} models, 1000 bootstrap "
            "rounds, with the database queries (votes, sim success, agreement), on the arena's "
            "fit thread (the fit alone: the leaderboard section):",
            "",
            "| database | first computation | later ones |",
            "|---|---:|---:|",
            *compute_rows,
            "",
            f"### Refusing work under {OVERLOAD}x overload",
            "",
            f"Bursts of {OVERLOAD} concurrent requests per place there is. The arena has "
            f"{RUNNING_TURNS} running and {QUEUED_TURNS} queued turn places, all taken by turns "
            "whose episodes never finish (a stub execution service); each burst asks for new "
            "turns on free battles, with one battle read among them. The execution service has "
            f"{RUNNING_EPISODES} running and {WAITING_EPISODES} waiting episode slots, taken by "
            "real 500-step expert episodes (refilled before each burst). Every refusal is "
            "checked to be a 503 with Retry-After.",
            "",
            "| request | requests | p50 ms | p99 ms |",
            "|---|---:|---:|---:|",
            *overload_rows,
        ]
    )
