"""Alembic environment: the monitor runs migrations itself at start-up on a connection it passes in
(``config.attributes["connection"]``), so there is no ini file and no engine configured here."""

from __future__ import annotations

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
