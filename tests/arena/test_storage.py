"""Migrations on SQLite and PostgreSQL, and rate limits in memory and in Redis."""

import uuid

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, inspect

from vlarena.arena.ratelimit import RateLimiter
from vlarena.arena.storage.database import alembic_config, make_engine, migrate
from vlarena.arena.storage.tables import Base
from vlarena.errors import RateLimitedError

TABLES = {"sessions", "battles", "turns", "episodes", "votes", "alembic_version"}


def _diff(connection: Connection) -> list[object]:
    return list(compare_metadata(MigrationContext.configure(connection), Base.metadata))


def _downgrade(connection: Connection) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.downgrade(config, "base")


async def test_migrations_build_the_schema_of_the_models(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        await migrate(engine)
        await migrate(engine)  # idempotent: every start runs it
        async with engine.connect() as connection:
            tables = await connection.run_sync(lambda c: set(inspect(c).get_table_names()))
            assert tables == TABLES
            assert await connection.run_sync(_diff) == []  # the models match the migrations
        async with engine.begin() as connection:
            await connection.run_sync(_downgrade)
        async with engine.connect() as connection:
            tables = await connection.run_sync(lambda c: set(inspect(c).get_table_names()))
            assert tables == {"alembic_version"}
        await migrate(engine)
    finally:
        await engine.dispose()


@pytest.mark.parametrize("storage", ["async+memory://", "async+redis://127.0.0.1:6379"])
async def test_rate_limits_count_per_key(storage: str) -> None:
    key = uuid.uuid4().hex
    first = RateLimiter(storage, {"vote": "2/minute"})
    await first.hit("vote", key)
    await first.hit("vote", key, "another-" + key)
    with pytest.raises(RateLimitedError) as caught:
        await first.hit("vote", key)
    assert 1 <= caught.value.retry_after_s <= 60
    if storage.startswith("async+redis"):  # a second worker process shares the count
        with pytest.raises(RateLimitedError):
            await RateLimiter(storage, {"vote": "2/minute"}).hit("vote", key)
