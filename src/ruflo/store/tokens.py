"""Auth tokens: stored by hash, found while not revoked.
Depends on the core model and ruflo.store.core.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from ruflo.errors import NotFound
from ruflo.model import JSON
from ruflo.store.core import SqlCore
from ruflo.store.rows import TOKEN_COLS, dumps, read_token, refuse_nul


class SqlTokens(SqlCore):
    """Auth tokens, in SQL."""

    def create_token(self, *, token_id: str, name: str, user_id: str, token_hash: str,
                     scopes: Sequence[str] = ()) -> JSON:
        refuse_nul("token", {"name": name, "user_id": user_id})
        with self.transaction():
            cur = self._exec("INSERT INTO tokens (id, name, user_id, token_hash, created_at, "
                             f"scopes) VALUES (?, ?, ?, ?, ?, ?) RETURNING {TOKEN_COLS}",
                             (token_id, name, user_id, token_hash, time.time(),
                              dumps(sorted(set(scopes)))))
            return read_token(cur.fetchone())

    def find_token(self, token_hash: str) -> JSON | None:
        row = self._one(f"SELECT {TOKEN_COLS} FROM tokens WHERE token_hash = ? AND "
                        "revoked_at IS NULL", (token_hash,))
        return None if row is None else read_token(row)

    def list_tokens(self) -> list[JSON]:
        return [read_token(row) for row in self._read(
            f"SELECT {TOKEN_COLS} FROM tokens ORDER BY created_at")]

    def revoke_token(self, token_id: str) -> None:
        with self.transaction():
            cur = self._exec("UPDATE tokens SET revoked_at = COALESCE(revoked_at, ?) "
                             "WHERE id = ?", (time.time(), token_id))
            if cur.rowcount != 1:
                raise NotFound(f"no token {token_id!r}")
