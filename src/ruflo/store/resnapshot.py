"""The maintainers' step after adding a migration: migrate a scratch SQLite database to the head
and print ruflo/store/snapshot.py rewritten from it. Depends on ruflo.store.opening and snapshot.

    python -m ruflo.store.resnapshot > src/ruflo/store/snapshot.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from ruflo.store import snapshot
from ruflo.store.opening import HEAD_REVISION, run_migrations, sqlite_connect, sqlite_engine


def module_text(revision: str, statements: tuple[str, ...]) -> str:
    """snapshot.py's text with its revision and statements replaced."""
    text = Path(snapshot.__file__).read_text(encoding="utf-8")
    head, rest = text.split("SQLITE_SCHEMA: tuple[str, ...] = (\n", 1)
    tail = rest[rest.index('"""Every statement'):]
    head = head.replace(f'REVISION = "{snapshot.REVISION}"', f'REVISION = "{revision}"')
    body = "".join(f"    {statement!r},\n" for statement in statements)
    return f"{head}SQLITE_SCHEMA: tuple[str, ...] = (\n{body})\n{tail}"


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        migrated = sqlite_connect(Path(folder) / "migrated.db", "normal")
        try:
            run_migrations(sqlite_engine(migrated), dialect="sqlite")
            statements = snapshot.schema_statements(migrated)
        finally:
            migrated.close()
    sys.stdout.write(module_text(HEAD_REVISION, statements))


if __name__ == "__main__":  # pragma: no cover - run by hand
    main()
