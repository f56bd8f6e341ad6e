"""Alembic environment: always run with a connection handed over by ``database.migrate``."""

from __future__ import annotations

from alembic import context

from reconciler.state import crm  # noqa: F401 - registers the CRM tables on the metadata
from reconciler.state.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only `alembic` run by hand lands here
    raise RuntimeError("run migrations with `reconcile db upgrade`")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
