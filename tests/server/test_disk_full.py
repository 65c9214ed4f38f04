"""A full disk under the store, over real HTTP: a real tmpfs filled to the last byte, holding
the SQLite file or a Postgres tablespace. Writes answer 503 saying the disk is full and that
nothing was changed, /readyz says not ready while writes fail, and both recover by themselves
once space returns. Mounting needs root; without it the tests are skipped, saying why."""

from __future__ import annotations

import errno
import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from server_harness import Served

HIVES = "/api/v2/hives"
pytestmark = [pytest.mark.integration, pytest.mark.slow]


def mount_tmpfs(size: str) -> Iterator[Path]:
    # Outside pytest's temp dir: Postgres must be able to reach the folder for a tablespace.
    where = Path(f"/tmp/ruflo-small-disk-{uuid.uuid4().hex[:12]}")
    where.mkdir(mode=0o755)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs",
                              str(where)], capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        where.rmdir()
        pytest.skip(f"can't mount a small tmpfs to fill (needs root): {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)
        where.rmdir()


def fill(disk: Path) -> Path:
    """Write a file until the disk has no byte left; remove it to give the space back."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    size = 65536
    try:
        while size:
            try:
                os.write(fd, b"\xff" * size)
            except OSError as error:
                if error.errno != errno.ENOSPC:
                    raise
                size //= 2
    finally:
        os.close(fd)
    return filler


def post_until_refused(served: Served, hive_id: str) -> tuple[int, dict[str, str]]:
    """Post tasks with long descriptions until one is refused; the count posted and the
    refusal."""
    for n in range(400):
        answer = served.client.post(f"{HIVES}/{hive_id}/tasks",
                                    json={"title": f"t{n}", "description": os.urandom(16_000).hex()})
        if answer.status_code != 201:
            body: dict[str, str] = answer.json()
            assert answer.status_code == 503, answer.text
            return n, body
    raise AssertionError("400 tasks of 32 kB each fitted on a full disk")


def check_full_then_recovered(served: Served, filler: Path) -> None:
    hive = served.client.post(HIVES, json={"objective": "fill the disk", "agents": 1})
    if hive.status_code != 201:  # the hive itself may not fit; the answer must still be right
        assert hive.status_code == 503, hive.text
        filler.unlink()
        hive = served.client.post(HIVES, json={"objective": "fill the disk", "agents": 1})
        filler = fill(filler.parent)
    hive_id = hive.json()["id"]
    before = len(served.client.get(f"{HIVES}/{hive_id}/tasks", params={"limit": 1000})
                 .json()["tasks"])
    posted, refusal = post_until_refused(served, hive_id)
    assert refusal["error"] == "unavailable"
    assert "disk is full" in refusal["message"]
    assert "nothing was changed" in refusal["message"]
    board = served.client.get(f"{HIVES}/{hive_id}/tasks", params={"limit": 1000})
    assert board.status_code == 200  # reads go on
    assert len(board.json()["tasks"]) == before + posted  # the refused task is not there

    for _ in range(3):  # not ready for as long as writes fail, however often asked
        ready = served.client.get("/readyz")
        assert ready.status_code == 503, ready.text
        assert ready.json()["status"] == "not ready"
        assert "disk is full" in ready.json()["store"]

    filler.unlink()
    ready = served.client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["status"] == "ready"
    again = served.client.post(f"{HIVES}/{hive_id}/tasks", json={"title": "after"})
    assert again.status_code == 201, again.text
    assert served.client.get("/readyz").status_code == 200


@pytest.fixture
def small_disk() -> Iterator[Path]:
    yield from mount_tmpfs("3m")


def test_sqlite_on_a_full_disk(make_server: Callable[..., Served], small_disk: Path) -> None:
    served = make_server(database_url=f"sqlite:///{small_disk / 'ruflo.db'}")
    served.client.post(HIVES, json={"objective": "warm up"})
    check_full_then_recovered(served, fill(small_disk))


@pytest.fixture
def full_pg_tablespace(pg_schema_url: str) -> Iterator[tuple[str, Path]]:
    """The test's Postgres schema with its tables in a tablespace on a small tmpfs."""
    import psycopg

    for disk in mount_tmpfs("8m"):
        if subprocess.run(["chown", "postgres:postgres", str(disk)], check=False).returncode:
            pytest.skip("the tmpfs can't be handed to the postgres user")
        name = f"ts_{uuid.uuid4().hex[:16]}"
        with psycopg.connect(pg_schema_url, autocommit=True) as conn:
            try:
                conn.execute(f"CREATE TABLESPACE {name} LOCATION '{disk}'")
            except psycopg.Error as error:
                pytest.skip(f"Postgres can't put a tablespace on the tmpfs: {error}")
        try:
            yield f"{pg_schema_url}%20-cdefault_tablespace%3D{name}", disk
        finally:
            with psycopg.connect(pg_schema_url, autocommit=True) as conn:
                schema = conn.execute("SELECT current_schema()").fetchone()
                assert schema is not None
                conn.execute(f"DROP SCHEMA IF EXISTS {schema[0]} CASCADE")
                conn.execute(f"DROP TABLESPACE IF EXISTS {name}")


@pytest.mark.postgres
def test_postgres_with_a_full_tablespace(make_server: Callable[..., Served],
                                         full_pg_tablespace: tuple[str, Path]) -> None:
    url, disk = full_pg_tablespace
    served = make_server(database_url=url)
    served.client.post(HIVES, json={"objective": "warm up"})
    check_full_then_recovered(served, fill(disk))
