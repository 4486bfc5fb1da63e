"""Scaling out: completed turns per minute with 1 and 2 execution workers on the durable turn
queue, each worker's CPU use, and the queue wait of turns (arena and broker in their own
processes, PostgreSQL, a private redis-server)."""

import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import redis
from rich.progress import Progress

from vlarena.testing import RedisProcess, ServiceProcess, free_port, scratch_postgres

TURNS = 20
MAX_STEPS = 100
# One model call per step of the `small` flow preset on both sides: the work is the model's and
# the simulator's, as with a learned policy; one intra-op thread per worker (a core each).
PAIR = "vla-flow-small-random,vla-ar-small-random"
WORKER_ENV = {
    "VLA_EXEC_PRESETS": "vla-flow:small,vla-ar:small",
    "VLA_EXEC_HORIZON": "1",
    "VLA_EXEC_SHIPPED_MODELS": "false",
    "OMP_NUM_THREADS": "1",
}
PREFIX = "bench"
TICKS_PER_S = 100  # /proc/<pid>/stat clock ticks (Linux's USER_HZ)


@dataclass(frozen=True)
class Run:
    episodes_at_once: int  # per worker (VLA_EXEC_MAX_CONCURRENT_EPISODES)
    workers: int
    wall_s: float
    waits_s: list[float]  # each turn: enqueued → leased by a worker
    cpu_percent: list[float]  # each worker's CPU over the run (100 = one core)
    arena_cpu_percent: float

    @property
    def per_minute(self) -> float:
        return TURNS / self.wall_s * 60


def _cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_S  # utime + stime


def _watch_waits(url: str, stop: threading.Event, waits: dict[str, float]) -> None:
    """Poll the broker: an entry's wait is from its id's timestamp to when it is first leased."""
    broker = redis.Redis.from_url(url, decode_responses=True)
    while not stop.is_set():
        leases: Any = broker.xpending_range(f"{PREFIX}:turns", "workers", "-", "+", 100)
        now_ms = time.time() * 1000
        for lease in leases:
            entry = lease["message_id"]
            waits.setdefault(entry, (now_ms - int(entry.split("-")[0])) / 1000)
        stop.wait(0.05)
    broker.close()


@contextmanager
def _stack(
    workers: int, episodes: int, broker: RedisProcess, database_url: str
) -> Iterator[tuple[ServiceProcess, list[ServiceProcess]]]:
    queue = {"VLA_QUEUE_URL": broker.url, "VLA_QUEUE_PREFIX": PREFIX}
    execution = [
        ServiceProcess(
            "execute",
            p,
            "/health",
            VLA_EXEC_PORT=str(p),
            VLA_EXEC_MAX_CONCURRENT_EPISODES=str(episodes),
            **WORKER_ENV,
            **queue,
        )
        for p in (free_port() for _ in range(workers))
    ]
    port = free_port()
    rates = {f"VLA_ARENA_{k}_RATE": "100000/minute" for k in ("BATTLE", "TURN", "VOTE", "SESSION")}
    arena = ServiceProcess(
        "arena",
        port,
        "/api/health",
        VLA_ARENA_PORT=str(port),
        VLA_ARENA_DATABASE_URL=database_url,
        VLA_SERVER_URL=",".join(w.url for w in execution),
        VLA_ARENA_MODELS=PAIR,
        VLA_ARENA_MAX_STEPS=str(MAX_STEPS),
        VLA_ARENA_MAX_QUEUED_TURNS=str(TURNS),
        **rates,
        **queue,
    )
    try:
        for process in (*execution, arena):
            process.start()
        yield arena, execution
    finally:
        for process in (arena, *execution):
            process.kill()


def _measure(workers: int, episodes: int, broker: RedisProcess, database_url: str) -> Run:
    with (
        _stack(workers, episodes, broker, database_url) as (arena, execution),
        httpx.Client(base_url=arena.url, timeout=60) as client,
    ):
        auth = {"Authorization": f"Bearer {client.post('/api/sessions').json()['token']}"}
        battles = [
            client.post("/api/battles", json={"scene_id": "table"}, headers=auth).json()[
                "battle_id"
            ]
            for _ in range(TURNS)
        ]
        # Warm both models on every worker (first loads are not throughput).
        warm = client.post("/api/battles", json={"scene_id": "table"}, headers=auth).json()
        for _ in range(workers):
            _turns(client, auth, [warm["battle_id"]])
        stop, waits = threading.Event(), dict[str, float]()
        watcher = threading.Thread(target=_watch_waits, args=(broker.url, stop, waits))
        pids = [p.pid for p in (*execution, arena) if p.pid is not None]
        cpu_before = [_cpu_s(pid) for pid in pids]
        watcher.start()
        started = time.monotonic()
        _turns(client, auth, battles)
        wall_s = time.monotonic() - started
        cpu = [
            (_cpu_s(pid) - before) / wall_s * 100
            for pid, before in zip(pids, cpu_before, strict=True)
        ]
        stop.set()
        watcher.join()
    return Run(episodes, workers, wall_s, list(waits.values()), cpu[:-1], cpu[-1])


def _turns(client: httpx.Client, auth: dict[str, str], battles: list[str]) -> None:
    """Add one turn to each battle at once; return when every one is over (all must succeed)."""
    for battle_id in battles:
        reply = client.post(
            f"/api/battles/{battle_id}/turns",
            json={"instruction": "touch the red cube"},
            headers=auth,
        )
        reply.raise_for_status()
    for battle_id in battles:
        while (shown := client.get(f"/api/battles/{battle_id}").json())["status"] in (
            "queued",
            "running",
        ):
            time.sleep(0.25)
        if shown["turns"][-1]["status"] != "done":
            raise RuntimeError(f"a turn failed: {shown['turns'][-1]}")


def run(samples: int, progress: Progress) -> str:
    del samples  # the turn count is fixed: throughput, not latency samples
    task = progress.add_task("queue: 1 and 2 execution workers", total=4)
    runs = []
    with tempfile.TemporaryDirectory() as directory, scratch_postgres() as database_url:
        broker = RedisProcess(directory)
        broker.start()
        try:
            for episodes in (2, 1):
                for workers in (1, 2):
                    runs.append(_measure(workers, episodes, broker, database_url))
                    progress.advance(task)
        finally:
            with suppress(Exception):
                broker.kill()
    ratios = [two.per_minute / one.per_minute for one, two in (runs[0:2], runs[2:4])]
    rows = "\n".join(
        f"| {r.episodes_at_once} | {r.workers} | {r.per_minute:.1f} | {r.wall_s:.1f} | "
        f"{' + '.join(f'{c:.0f}' for c in r.cpu_percent)} | {r.arena_cpu_percent:.0f} | "
        f"{np.percentile(r.waits_s, 50):.1f} / {np.percentile(r.waits_s, 99):.1f} |"
        for r in runs
    )
    return f"""## Scaling out: execution workers on the durable turn queue

{TURNS} turns added at once through one arena process (PostgreSQL, turns on Redis streams), each
two {MAX_STEPS}-step episodes of the `small` random-weight presets (flow and autoregressive, one
model call per step), run by 1 then 2 `vlarena execute` workers (one intra-op thread each),
each running a turn's two episodes at once (the default) or one after the other. CPU is each
process's user + system time over the run (100% = one core); queue wait is from a turn's entry
on the stream to its first lease.

| episodes at once | workers | turns/min | wall s | worker CPU % | arena CPU % | wait p50/p99 s |
|---:|---:|---:|---:|---|---:|---:|
{rows}

Two workers complete **{ratios[0]:.2f}x** the turns of one when each runs two episodes at once
(one worker alone already uses {runs[0].cpu_percent[0]:.0f}% of the 200% two cores give), and
**{ratios[1]:.2f}x** when each runs one (one worker alone uses {runs[2].cpu_percent[0]:.0f}%: a
core idles).
"""
