"""The quick road for the everyday `ruflo memory store` and `ruflo memory search` calls: their
arguments read by hand and the embedded store opened without typer or pydantic, whose imports
alone cost more than the whole call may take (250 ms). Any argument list it does not fully
recognise, and any setting that needs validating, goes the normal way (the typer command).

Also the output both roads share. Depends on the standard library, the memory layer and the
store; never on typer or pydantic.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ruflo.memory.notes import Memory
    from ruflo.model import MemoryEntry

DEFAULT_NAMESPACE = "default"
SEARCH_LIMIT = (1, 1000)


def say(text: str, *, err: bool = False) -> None:
    print(text, file=sys.stderr if err else sys.stdout)


def one_line(text: str, limit: int = 160) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit - 1] + "…"


def show(entries: Sequence[MemoryEntry], as_json: bool, *, full: bool = False) -> None:
    from ruflo.memory.notes import entry_to_json

    if as_json:
        say(json.dumps([entry_to_json(e) for e in entries], ensure_ascii=False))
        return
    if not entries:
        say("no notes", err=True)
        return
    for entry in entries:
        score = f"  (score {entry.score:.3f})" if entry.score is not None else ""
        tags = f"  [{', '.join(entry.tags)}]" if entry.tags else ""
        text = entry.content if full else one_line(entry.content)
        say(f"{entry.namespace} / {entry.key}{tags}{score}\n  {text}")


def store_note(memory: Memory, namespace: str, key: str, content: str, tags: Sequence[str],
               as_json: bool) -> None:
    """`ruflo memory store`: CONTENT '-' reads the text from stdin."""
    from ruflo.memory.notes import entry_to_json

    text = sys.stdin.read() if content == "-" else content
    entry = memory.put(namespace, key, text, tags=tags)
    if as_json:
        say(json.dumps(entry_to_json(entry), ensure_ascii=False))
    else:
        say(f"stored {entry.namespace} / {entry.key}")


def search_notes(memory: Memory, query: str, namespace: str | None, limit: int,
                 as_json: bool) -> None:
    """`ruflo memory search`."""
    show(memory.search(query, namespace=namespace, limit=limit), as_json)


@dataclass
class Call:
    """A recognised `memory store` or `memory search` call."""

    command: str
    positionals: list[str] = field(default_factory=list)
    namespace: str | None = None
    tags: list[str] = field(default_factory=list)
    limit: int = 10
    keyword: bool = False
    as_json: bool = False


_VALUED = {"-n": "namespace", "--namespace": "namespace", "-t": "tag", "--tag": "tag",
           "-l": "limit", "--limit": "limit"}
_FLAGS = {"--json": "as_json", "--keyword": "keyword"}
_ALLOWED = {"store": {"namespace", "tag", "as_json"},
            "search": {"namespace", "limit", "keyword", "as_json"}}
_POSITIONALS = {"store": 2, "search": 1}


def parse(args: Sequence[str]) -> Call | None:
    """The call, or None when anything about it is not plainly one of the recognised forms."""
    if not args or args[0] not in _ALLOWED:
        return None
    call = Call(args[0])
    allowed = _ALLOWED[call.command]
    rest = list(args[1:])
    while rest:
        token = rest.pop(0)
        if token in _FLAGS and _FLAGS[token] in allowed:
            setattr(call, _FLAGS[token], True)
        elif token in _VALUED and _VALUED[token] in allowed:
            if not rest:
                return None
            value = rest.pop(0)
            if value.startswith("-"):
                return None
            if _VALUED[token] == "namespace":
                call.namespace = value
            elif _VALUED[token] == "tag":
                call.tags.append(value)
            else:
                if not value.isdigit() or not SEARCH_LIMIT[0] <= int(value) <= SEARCH_LIMIT[1]:
                    return None
                call.limit = int(value)
        elif token.startswith("-") and token != "-":
            return None  # --help, --opt=value, "--", an unknown option: typer answers those
        else:
            call.positionals.append(token)
    if len(call.positionals) != _POSITIONALS[call.command]:
        return None
    return call


def run(args: Sequence[str]) -> int | None:
    """Run a recognised call on the embedded store and return its exit code; None to hand the
    call to the typer command instead (RufloErrors propagate, for cli.run to print)."""
    from ruflo.environment import quick_store_settings

    call = parse(args)
    if call is None:
        return None
    settings = quick_store_settings()
    if settings is None:
        return None
    from ruflo.memory import open_memory
    from ruflo.store.sql import SqlStore

    store = SqlStore(settings.store_url, sqlite_synchronous=settings.sqlite_synchronous)
    try:
        if call.command == "store":
            key, content = call.positionals
            # Storing never embeds (the next search does), so the keyword Memory stores alike.
            memory = open_memory(store, data_dir=settings.data_dir, semantic=False)
            store_note(memory, call.namespace or DEFAULT_NAMESPACE, key, content, call.tags,
                       call.as_json)
        else:
            memory = open_memory(store, data_dir=settings.data_dir,
                                 semantic=False if call.keyword else None)
            search_notes(memory, call.positionals[0], call.namespace, call.limit, call.as_json)
    finally:
        store.close()
    return 0
