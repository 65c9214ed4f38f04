"""`ruflo memory store|get|search|list|delete|export|import`: namespaced notes from the shell.

Imports only typer and the standard library at module level; the store and the memory layer load
inside each command. The everyday store and search calls take the quicker road in
`memory_quick` (no typer, no pydantic); what they print is written there for both roads.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from ruflo.commands.memory_quick import (
    DEFAULT_NAMESPACE,
    SEARCH_LIMIT,
    search_notes,
    show,
    store_note,
)

if TYPE_CHECKING:
    from ruflo.memory.notes import Memory

app = typer.Typer(help="Store, get, search, list, delete, export and import memory notes.",
                  no_args_is_help=True)

NamespaceOption = typer.Option(DEFAULT_NAMESPACE, "--namespace", "-n",
                               help="Namespace, e.g. hive:<id> or agent:<id>.")
JsonOption = typer.Option(False, "--json", help="Print JSON.")


@contextmanager
def open_memory(*, keyword: bool = False) -> Iterator[Memory]:
    from ruflo.config import load_settings
    from ruflo.memory import open_memory as memory_over
    from ruflo.store import open_store

    settings = load_settings()
    store = open_store(settings)
    try:
        yield memory_over(store, data_dir=settings.data_dir, semantic=False if keyword else None)
    finally:
        store.close()


@app.command()
def store(
    key: str = typer.Argument(..., help="The note's key (unique in its namespace)."),
    content: str = typer.Argument(..., help="The note's text; '-' reads it from stdin."),
    namespace: str = NamespaceOption,
    tags: list[str] = typer.Option([], "--tag", "-t", help="A tag (repeatable)."),  # noqa: B008
    as_json: bool = JsonOption,
) -> None:
    """Store (or replace) the note KEY."""
    with open_memory() as memory:
        store_note(memory, namespace, key, content, tags, as_json)


@app.command()
def get(key: str = typer.Argument(...), namespace: str = NamespaceOption,
        as_json: bool = JsonOption) -> None:
    """Print the note KEY."""
    with open_memory(keyword=True) as memory:
        entry = memory.get(namespace, key)
    if as_json:
        from ruflo.memory import entry_to_json

        typer.echo(json.dumps(entry_to_json(entry), ensure_ascii=False))
    else:
        typer.echo(entry.content)


@app.command()
def search(
    query: str = typer.Argument(...),
    namespace: str | None = typer.Option(None, "--namespace", "-n",
                                         help="Only this namespace (default: all)."),
    limit: int = typer.Option(10, "--limit", "-l", min=SEARCH_LIMIT[0], max=SEARCH_LIMIT[1]),
    keyword: bool = typer.Option(False, "--keyword",
                                 help="Full-text search only, even with the embeddings extra."),
    as_json: bool = JsonOption,
) -> None:
    """Notes most relevant to QUERY, best first."""
    with open_memory(keyword=keyword) as memory:
        search_notes(memory, query, namespace, limit, as_json)


@app.command("list")
def list_notes(
    namespace: str | None = typer.Option(None, "--namespace", "-n",
                                         help="Only this namespace (default: all)."),
    limit: int = typer.Option(100, "--limit", "-l", min=1),
    as_json: bool = JsonOption,
) -> None:
    """List notes."""
    with open_memory(keyword=True) as memory:
        show(memory.list_notes(namespace, limit=limit), as_json)


@app.command()
def delete(key: str = typer.Argument(...), namespace: str = NamespaceOption) -> None:
    """Delete the note KEY."""
    from ruflo.errors import NotFound

    with open_memory(keyword=True) as memory:
        if not memory.delete(namespace, key):
            raise NotFound(f"no note {key!r} in namespace {namespace!r}: nothing was deleted "
                           "(`ruflo memory list -n NAMESPACE` shows the keys)")
    typer.echo(f"deleted {namespace} / {key}")


@app.command("export")
def export_notes(
    namespace: str | None = typer.Option(None, "--namespace", "-n",
                                         help="Only this namespace (default: all)."),
    output: Path | None = typer.Option(None, "--output", "-o",  # noqa: B008
                                       help="File to write (default: stdout)."),
) -> None:
    """Write notes as JSON lines (one note per line), for `ruflo memory import`."""
    with open_memory(keyword=True) as memory:
        items = memory.export(namespace)
    lines = "".join(json.dumps(item, ensure_ascii=False) + "\n" for item in items)
    if output is None:
        sys.stdout.write(lines)
    else:
        output.write_text(lines, encoding="utf-8")
        typer.echo(f"exported {len(items)} notes to {output}", err=True)


@app.command("import")
def import_notes(
    source: str = typer.Argument(..., help="A JSON-lines file (or a JSON array); '-' is stdin."),
    namespace: str | None = typer.Option(None, "--namespace", "-n",
                                         help="Put every note in this namespace."),
) -> None:
    """Read notes written by `ruflo memory export` (all or nothing)."""
    from ruflo.errors import ConfigError

    if source == "-":
        text = sys.stdin.read()
    else:
        try:
            text = Path(source).read_text(encoding="utf-8")
        except OSError as error:
            raise ConfigError(f"cannot read {source}: {error.strerror}; nothing was "
                              "imported") from None
    items = parse_notes(text)
    with open_memory() as memory:
        count = memory.import_entries(items, namespace=namespace)
    typer.echo(f"imported {count} notes")


def parse_notes(text: str) -> list[Any]:
    """JSON lines, or one JSON array, into objects; a bad line names its number."""
    from ruflo.errors import ConfigError

    stripped = text.strip()
    if stripped.startswith("["):
        try:
            items = json.loads(stripped)
        except json.JSONDecodeError as error:
            raise ConfigError(f"the file is not valid JSON ({error}); nothing was "
                              "imported") from None
        return list(items)
    items = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            items.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise ConfigError(f"line {number} is not valid JSON ({error.msg}); nothing was "
                              "imported") from None
    return items
