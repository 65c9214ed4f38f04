"""Memory notes: (namespace, key) notes with full-text search (FTS5 on SQLite, tsvector on
Postgres). Depends on the core model and ruflo.store.core."""

from __future__ import annotations

import re
from typing import Any

from ruflo.errors import NotFound
from ruflo.model import MemoryEntry
from ruflo.store.core import SqlCore
from ruflo.store.rows import MEMORY_COLS, dumps, epoch, read_memory, refuse_nul

_WORD = re.compile(r"\w+", re.UNICODE)
_MAX_SEARCH_WORDS = 32


class SqlMemory(SqlCore):
    """Memory notes, in SQL."""

    def memory_put(self, entry: MemoryEntry) -> MemoryEntry:
        refuse_nul("note", {"namespace": entry.namespace, "key": entry.key,
                             "content": entry.content, "tags": entry.tags})
        with self.transaction():
            cur = self._exec(
                "INSERT INTO memory (namespace, key, content, tags, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (namespace, key) DO UPDATE SET "
                "content = excluded.content, tags = excluded.tags, "
                f"updated_at = excluded.updated_at RETURNING {MEMORY_COLS}",
                (entry.namespace, entry.key, entry.content, dumps(list(entry.tags)),
                 epoch(entry.created_at), epoch(entry.updated_at)))
            return read_memory(cur.fetchone())

    def memory_get(self, namespace: str, key: str) -> MemoryEntry:
        row = self._one(f"SELECT {MEMORY_COLS} FROM memory WHERE namespace = ? AND key = ?",
                        (namespace, key))
        if row is None:
            raise NotFound(f"no memory note {namespace}/{key}")
        return read_memory(row)

    def memory_list(self, namespace: str | None = None, *,
                    limit: int | None = None) -> list[MemoryEntry]:
        sql, params = f"SELECT {MEMORY_COLS} FROM memory", list[Any]()
        if namespace is not None:
            sql += " WHERE namespace = ?"
            params.append(namespace)
        sql += " ORDER BY namespace, key"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [read_memory(row) for row in self._read(sql, params)]

    def memory_delete(self, namespace: str, key: str) -> bool:
        with self.transaction():
            return bool(self._exec("DELETE FROM memory WHERE namespace = ? AND key = ?",
                                   (namespace, key)).rowcount)

    def memory_search(self, query: str, *, namespace: str | None = None,
                      limit: int = 10) -> list[MemoryEntry]:
        # Only words reach the search engine: punctuation in a person's query can never become
        # FTS5 or tsquery syntax. Any word may match (OR); the ranking rewards notes matching more.
        words = list(dict.fromkeys(w.lower() for w in _WORD.findall(query)))[:_MAX_SEARCH_WORDS]
        if not words or limit <= 0:
            return []
        cols = ", ".join(f"m.{c.strip()}" for c in MEMORY_COLS.split(","))
        params: list[Any]
        if self._sql.postgres:
            tsquery = " || ".join(["plainto_tsquery('english', ?)"] * len(words))
            sql = (f"SELECT {cols}, ts_rank(m.tsv, q.query) AS rank FROM memory m, "
                   f"(SELECT {tsquery} AS query) q WHERE m.tsv @@ q.query")
            params = list(words)
            if namespace is not None:
                sql += " AND m.namespace = ?"
                params.append(namespace)
            sql += " ORDER BY rank DESC, m.updated_at DESC LIMIT ?"
            params.append(limit)
            return [read_memory(row[:6], float(row[6])) for row in self._read(sql, params)]
        match = " OR ".join('"' + word.replace('"', '""') + '"' for word in words)
        sql = (f"SELECT {cols}, bm25(memory_fts, 3.0, 1.0, 2.0) AS rank FROM memory_fts "
               "JOIN memory m ON m.id = memory_fts.rowid WHERE memory_fts MATCH ?")
        params = [match]
        if namespace is not None:
            sql += " AND m.namespace = ?"
            params.append(namespace)
        sql += " ORDER BY rank, m.updated_at DESC LIMIT ?"
        params.append(limit)
        return [read_memory(row[:6], -float(row[6])) for row in self._read(sql, params)]
