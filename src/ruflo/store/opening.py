"""Opening a store safely: URL normalisation, the refusal to touch a file that is not a ruflo
database, one-line reasons when Postgres can't be reached, and migrations applied at start.

Depends on SQLAlchemy (engines) and, only when the schema must change, on Alembic; opening an
existing SQLite store at the current revision needs neither (stdlib sqlite3 only), because their
imports alone cost more than a whole `ruflo memory` call may take.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import struct
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from ruflo.errors import StoreCorrupt, StoreError, StoreUnreachable

if TYPE_CHECKING:
    import sqlalchemy as sa

HEAD_REVISION = "0005"
"""The schema revision this code writes; a test keeps it equal to the migrations' head."""

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
RUFLO_TABLES = ("ruflo_meta", "alembic_version", "hives", "agents", "tasks", "task_deps",
                "events", "ledger", "approvals", "users", "conversations", "messages",
                "user_settings", "tokens", "memory", "workers")
SQLITE_MAGIC = b"SQLite format 3\x00"
BUSY_TIMEOUT_S = 30.0
PG_MIGRATION_LOCK = 0x7275666C6F  # "ruflo": one migrator at a time per database


def normalise_url(url: str) -> str:
    """Accept postgres:// and postgresql:// (what people paste) and use psycopg 3."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


POSTGRES_HINT = "pip install 'ruflo[postgres]' (or scripts/install, which brings it)"
"""How to get the Postgres driver, an extra: the main job's install runs on SQLite."""


def postgres_driver() -> Any:
    """psycopg, imported; without it, a StoreError saying what to install (nothing touched)."""
    try:
        import psycopg
    except ImportError as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise StoreError(f"the store URL names Postgres but its driver, psycopg, can't be "
                         f"imported ({reason}); ruflo did not start and changed nothing: "
                         f"{POSTGRES_HINT}") from None
    return psycopg


def mask_password(url: str) -> str:
    """The URL with its password replaced by *** (for traces and errors)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def sqlite_file(url: str) -> Path:
    """The file of a sqlite:/// URL."""
    path = url.split("://", 1)[1]
    if not path.startswith("/"):
        raise StoreError(f"the SQLite store needs a file path, not {url!r}")
    path = path[1:].split("?", 1)[0]
    if not path or path == ":memory:":
        raise StoreError("the SQLite store needs a file (an in-memory store would lose "
                         "everything at exit)")
    return Path(path)


# -- SQLite ------------------------------------------------------------------------------------

def sqlite_connect(path: Path, synchronous: str) -> sqlite3.Connection:
    """A connection in manual-transaction mode with ruflo's pragmas."""
    conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S, isolation_level=None,
                           check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
    conn.execute(f"PRAGMA synchronous = {'FULL' if synchronous == 'full' else 'NORMAL'}")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA temp_store = MEMORY")
    return conn


def check_sqlite_file(path: Path) -> str:
    """Refuse a file that is not a readable ruflo database, without writing to it.

    Returns the stored schema revision. Raises StoreCorrupt, naming the file and the reason.
    """
    def refuse(reason: str) -> StoreCorrupt:
        return StoreCorrupt(f"{path} {reason}; ruflo did not start and left the file untouched "
                            "(move it away or set RUFLO_DATA_DIR to use another store)")

    if not path.is_file():
        raise refuse("is not a regular file")
    size = path.stat().st_size
    with path.open("rb") as handle:
        header = handle.read(100)
    if len(header) < 100 or not header.startswith(SQLITE_MAGIC):
        raise refuse("is not a ruflo database (not even an SQLite file)" if size
                     else "is empty (0 bytes), not a ruflo database")
    page_size = struct.unpack(">H", header[16:18])[0]
    page_size = 65536 if page_size == 1 else page_size
    pages, counter, valid_for = (struct.unpack(">I", header[o:o + 4])[0] for o in (28, 24, 92))
    wal = path.with_name(path.name + "-wal")
    wal_pending = wal.exists() and wal.stat().st_size > 0
    # With a WAL pending the header may be ahead of the file (a checkpoint was cut); SQLite
    # recovers that from the WAL, so only judge the size of a cleanly closed file.
    if counter == valid_for and pages and not wal_pending and size < pages * page_size:
        raise refuse(f"is truncated ({size} bytes, its header says {pages * page_size})")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S,
                               isolation_level=None)
    except sqlite3.Error as error:
        raise refuse(f"cannot be opened ({error})") from None
    try:
        tables = {row[0] for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "ruflo_meta" not in tables:
            listed = ", ".join(sorted(tables)[:6]) or "no tables"
            raise refuse(f"is an SQLite database but not ruflo's ({listed})")
        app = conn.execute("SELECT value FROM ruflo_meta WHERE key = 'app'").fetchone()
        if not app or app[0] != "ruflo":
            raise refuse("is an SQLite database but not ruflo's (no ruflo marker)")
        missing = [name for name in RUFLO_TABLES if name not in tables]
        if missing:
            raise refuse(f"is a damaged ruflo database (missing tables: {', '.join(missing)})")
        for name in RUFLO_TABLES:
            conn.execute(f"SELECT * FROM {name} LIMIT 1").fetchall()
        revision = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.DatabaseError as error:
        raise refuse(f"cannot be read ({error})") from None
    finally:
        conn.close()
    if not revision:
        raise refuse("is a damaged ruflo database (no schema revision)")
    return str(revision[0])


def create_sqlite_file(path: Path, synchronous: str) -> None:
    """Build a fresh store beside `path` and link it into place, so a crash half-way never
    leaves a half-made store and an existing file is never replaced."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.creating-{os.getpid()}")
    for leftover in (temp, temp.with_name(temp.name + "-wal"), temp.with_name(temp.name + "-shm")):
        leftover.unlink(missing_ok=True)
    conn = sqlite_connect(temp, "full")
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        from ruflo.store import snapshot

        if snapshot.REVISION == HEAD_REVISION:
            snapshot.create(conn)  # what the migrations build, without importing Alembic
        else:
            run_migrations(sqlite_engine(conn), dialect="sqlite")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    with temp.open("rb") as handle:
        os.fsync(handle.fileno())
    try:
        os.link(temp, path)
    except FileExistsError:
        pass  # another process made it first: use theirs
    finally:
        temp.unlink(missing_ok=True)
    fsync_dir(path.parent)


def sqlite_engine(conn: sqlite3.Connection) -> sa.Engine:
    """An engine over this one connection, for Alembic (which needs SQLAlchemy)."""
    import sqlalchemy as sa

    return sa.create_engine("sqlite://", creator=lambda: conn, poolclass=sa.pool.StaticPool)


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def upgrade_sqlite(path: Path, synchronous: str) -> None:
    conn = sqlite_connect(path, synchronous)
    try:
        # One writer migrates; Alembic's own commit ends this transaction (DDL and all).
        conn.execute("BEGIN IMMEDIATE")
        try:
            current = conn.execute("SELECT version_num FROM alembic_version").fetchone()
            if not current or current[0] != HEAD_REVISION:
                run_migrations(sqlite_engine(conn), dialect="sqlite")
            if conn.in_transaction:
                conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    finally:
        conn.close()


# -- Postgres ----------------------------------------------------------------------------------

def describe_pg(url: str) -> str:
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.hostname or 'localhost'}{port}/{parts.path.lstrip('/') or '(default)'}"


def pg_cause(error: BaseException) -> str:
    """The reason libpq gave, without its multi-line decoration."""
    text = str(getattr(error, "orig", None) or error).strip()
    first = text.splitlines()[0] if text else type(error).__name__
    marker = "failed: "
    if marker in first:
        first = first.rsplit(marker, 1)[1]
    for prefix in ("FATAL:", "ERROR:"):
        first = first.strip().removeprefix(prefix)
    return first.strip() or type(error).__name__


def pg_engine(url: str) -> sa.Engine:
    import sqlalchemy as sa
    from sqlalchemy.pool import NullPool

    query = {"connect_timeout": "5", "application_name": "ruflo"}
    engine = sa.create_engine(url, poolclass=NullPool,
                              connect_args={k: v for k, v in query.items() if k not in url})
    return engine


def pg_connect(engine: sa.Engine, url: str) -> Any:
    """A raw psycopg connection in autocommit mode (ruflo sends BEGIN/COMMIT itself)."""
    import psycopg
    import sqlalchemy as sa

    try:
        raw = engine.raw_connection()
    except (sa.exc.DBAPIError, psycopg.Error) as error:
        raise StoreUnreachable(
            f"cannot reach Postgres at {describe_pg(url)}: {pg_cause(error)}; ruflo did not start "
            "and did not fall back to SQLite (check DATABASE_URL)") from None
    driver = raw.driver_connection
    assert driver is not None
    driver.autocommit = True
    return raw


def prepare_pg(engine: sa.Engine, url: str) -> None:
    """Check the database is ruflo's (or empty of ruflo tables) and bring its schema to head."""
    raw = pg_connect(engine, url)
    try:
        cur = raw.cursor()
        cur.execute("SELECT to_regclass('alembic_version') IS NOT NULL, "
                    "to_regclass('ruflo_meta') IS NOT NULL")
        has_alembic, has_meta = cur.fetchone()
        if has_alembic and not has_meta:
            raise StoreCorrupt(f"Postgres database {describe_pg(url)} holds another "
                               "application's schema (alembic_version without ruflo_meta); ruflo "
                               "did not start and changed nothing (use a database or schema of "
                               "its own)")
        revision = None
        if has_alembic:
            cur.execute("SELECT version_num FROM alembic_version")
            row = cur.fetchone()
            revision = row[0] if row else None
    finally:
        raw.close()
    if revision == HEAD_REVISION:
        return
    check_known_revision(revision, f"Postgres database {describe_pg(url)}")
    with engine.connect() as conn, conn.begin():
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({PG_MIGRATION_LOCK})")
        run_migrations_on(conn)


# -- migrations ----------------------------------------------------------------------------------

def check_known_revision(revision: str | None, where: str) -> None:
    if revision is None or revision == HEAD_REVISION:
        return
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    script = ScriptDirectory.from_config(config)
    try:
        script.get_revision(revision)
    except Exception:
        raise StoreError(f"{where} has schema revision {revision!r}, written by a newer ruflo; "
                         "nothing was changed (upgrade ruflo)") from None


def run_migrations(engine: sa.Engine, *, dialect: str) -> None:
    with engine.connect() as conn:
        run_migrations_on(conn)
        conn.commit()


def run_migrations_on(conn: sa.Connection) -> None:
    """Upgrade to head on this connection (Alembic imported only now: it costs ~0.5 s)."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = conn
    command.upgrade(config, "head")


def migrations_head() -> str:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    head = ScriptDirectory.from_config(config).get_current_head()
    return str(head)


def open_sqlite(path: Path, synchronous: str) -> tuple[Callable[[], sqlite3.Connection], bool]:
    """Check or create the file, bring the schema to head; returns a connection factory and
    whether the store was created now."""
    created = False
    if not path.exists():
        create_sqlite_file(path, synchronous)
        created = True
    revision = check_sqlite_file(path)
    if revision != HEAD_REVISION:
        check_known_revision(revision, f"store {path}")
        upgrade_sqlite(path, synchronous)
    with contextlib.closing(sqlite_connect(path, synchronous)) as conn:
        mode = conn.execute("PRAGMA journal_mode").fetchone()
        if not mode or mode[0] != "wal":
            conn.execute("PRAGMA journal_mode = WAL")
    return (lambda: sqlite_connect(path, synchronous)), created
