"""Alembic environment: runs troth's migrations on the connection troth hands it."""

from __future__ import annotations

from alembic import context

from troth.store.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - troth always passes its connection
    raise RuntimeError("run migrations through `troth db upgrade`")
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
