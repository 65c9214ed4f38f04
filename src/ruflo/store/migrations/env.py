"""Alembic environment for ruflo's store: runs on the connection the store hands over.

Depends on alembic and SQLAlchemy only; started by ruflo.store.migrate, never by the alembic CLI.
"""

from __future__ import annotations

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=None, transaction_per_migration=False)
with context.begin_transaction():
    context.run_migrations()
