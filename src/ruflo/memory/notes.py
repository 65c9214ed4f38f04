"""Namespaced notes over the store: what agents (and people) leave for each other.

Depends on the core model, the Store protocol and, optionally, the semantic ranker. Namespaces
are free text; by convention a hive's shared notes live in `hive:<id>` and an agent's own in
`agent:<id>`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ruflo.errors import ConfigError, NotFound
from ruflo.model import JSON, MemoryEntry, utcnow

if TYPE_CHECKING:
    from ruflo.memory.semantic import SemanticRanker
    from ruflo.store.base import Store

SEMANTIC_CANDIDATES = 20_000
"""Most notes a semantic search compares against (each is embedded once, then cached)."""


def hive_namespace(hive_id: str) -> str:
    return f"hive:{hive_id}"


def agent_namespace(agent_id: str) -> str:
    return f"agent:{agent_id}"


class Memory:
    """Store, find and move notes. Search is semantic when a ranker is given, else the store's
    full-text ranking (FTS5 bm25 on SQLite, ts_rank on Postgres)."""

    def __init__(self, store: Store, ranker: SemanticRanker | None = None) -> None:
        self.store = store
        self.ranker = ranker

    @property
    def backend(self) -> str:
        return "semantic" if self.ranker is not None else "keyword"

    def put(self, namespace: str, key: str, content: str,
            tags: Sequence[str] = ()) -> MemoryEntry:
        if not namespace or not key:
            raise ConfigError("a note needs a namespace and a key: nothing was stored")
        now = utcnow()
        try:
            created = self.store.memory_get(namespace, key).created_at
        except NotFound:
            created = now
        entry = self.store.memory_put(MemoryEntry(
            namespace=namespace, key=key, content=content,
            tags=tuple(dict.fromkeys(t.strip() for t in tags if t.strip())),
            created_at=created, updated_at=now))
        # Not embedded here: the next semantic search embeds (and caches) what is new, so
        # storing a note stays as quick as a keyword store.
        return entry

    def get(self, namespace: str, key: str) -> MemoryEntry:
        return self.store.memory_get(namespace, key)

    def list_notes(self, namespace: str | None = None, *,
                   limit: int | None = None) -> list[MemoryEntry]:
        return self.store.memory_list(namespace, limit=limit)

    def delete(self, namespace: str, key: str) -> bool:
        return self.store.memory_delete(namespace, key)

    def search(self, query: str, *, namespace: str | None = None,
               limit: int = 10) -> list[MemoryEntry]:
        """The notes most relevant to `query`, best first, each with its `score`."""
        if not query.strip():
            return []
        keyword = self.store.memory_search(query, namespace=namespace, limit=limit)
        if self.ranker is None:
            return keyword
        candidates = self.store.memory_list(namespace, limit=SEMANTIC_CANDIDATES)
        return self.ranker.rank(query, candidates, limit=limit,
                                keyword_hits=[f"{e.namespace}\x00{e.key}" for e in keyword])

    def search_many(self, query: str, namespaces: Sequence[str], *,
                    limit: int = 5) -> list[MemoryEntry]:
        """Search several namespaces (e.g. the hive's and the agent's), best first overall."""
        found: list[MemoryEntry] = []
        for namespace in namespaces:
            found.extend(self.search(query, namespace=namespace, limit=limit))
        if self.ranker is not None:
            found.sort(key=lambda e: -(e.score or 0.0))
        return found[:limit]

    # -- export / import -----------------------------------------------------------------------
    def export(self, namespace: str | None = None) -> list[JSON]:
        """Notes as JSON objects (one per line in `ruflo memory export`)."""
        return [entry_to_json(e) for e in self.store.memory_list(namespace)]

    def import_entries(self, items: Iterable[JSON], *, namespace: str | None = None) -> int:
        """Store notes from JSON objects (as exported); `namespace` overrides theirs. Returns the
        count. Every object is checked before any is stored."""
        entries = [entry_from_json(item, namespace=namespace, line=number)
                   for number, item in enumerate(items, 1)]
        with self.store.transaction():
            for entry in entries:
                self.store.memory_put(entry)
        return len(entries)


def entry_to_json(entry: MemoryEntry) -> JSON:
    data: JSON = {"namespace": entry.namespace, "key": entry.key, "content": entry.content,
                  "tags": list(entry.tags), "created_at": entry.created_at.isoformat(),
                  "updated_at": entry.updated_at.isoformat()}
    if entry.score is not None:
        data["score"] = entry.score
    return data


def entry_from_json(item: Any, *, namespace: str | None = None, line: int = 0) -> MemoryEntry:
    where = f"note {line}" if line else "note"
    if not isinstance(item, dict):
        raise ConfigError(f"{where} is not a JSON object: nothing was imported")
    ns = namespace or item.get("namespace")
    key, content, tags = item.get("key"), item.get("content"), item.get("tags", [])
    if not isinstance(ns, str) or not ns or not isinstance(key, str) or not key:
        raise ConfigError(f"{where} needs a non-empty namespace and key: nothing was imported")
    if not isinstance(content, str):
        raise ConfigError(f"{where} ({ns}/{key}) has no text content: nothing was imported")
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise ConfigError(f"{where} ({ns}/{key}): tags must be a list of strings: nothing was "
                          "imported")
    now = utcnow()
    entry = MemoryEntry(namespace=ns, key=key, content=content, tags=tuple(tags),
                        created_at=parse_time(item.get("created_at"), now),
                        updated_at=parse_time(item.get("updated_at"), now))
    return replace(entry, score=None)


def parse_time(value: Any, default: datetime) -> datetime:
    if not isinstance(value, str):
        return default
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return default
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=default.tzinfo)
