"""An open store on a fresh Postgres schema, for the two-worker trace test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ruflo.store import open_store
from ruflo.store.sql import SqlStore


@pytest.fixture
def pg_store(pg_schema_url: str) -> Iterator[SqlStore]:
    store = open_store(pg_schema_url)
    yield store
    store.close()
