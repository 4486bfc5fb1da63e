"""Alembic environment: runs on the connection `database.migrate` hands over."""

from alembic import context
from sqlalchemy import Connection

from vlarena.arena.storage.tables import Base

connection: Connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
