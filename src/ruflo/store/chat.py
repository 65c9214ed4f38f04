"""Chat: conversations and their messages, users and their settings.
Depends on the core model and ruflo.store.core.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any

from ruflo.errors import NotFound
from ruflo.model import JSON, Conversation, Message
from ruflo.store.core import SqlCore
from ruflo.store.rows import (
    CONVERSATION_COLS,
    MESSAGE_COLS,
    dumps,
    epoch,
    loads,
    read_conversation,
    read_message,
    refuse_nul,
)


class SqlChat(SqlCore):
    """Chat, in SQL."""

    def _insert_messages(self, messages: Sequence[Message], first_ord: int,
                         conversation_id: str) -> None:
        for message in messages:
            refuse_nul("message", {"content": message.content, "role": message.role,
                                    "id": message.id, "parent_id": message.parent_id})
        self._many(f"INSERT INTO messages ({MESSAGE_COLS}, ord) VALUES "
                   f"(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   [(m.id, conversation_id, m.role, m.content, m.parent_id, m.interrupted,
                     dumps(m.data), epoch(m.created_at), epoch(m.updated_at), first_ord + i)
                    for i, m in enumerate(messages)])

    def create_conversation(self, conversation: Conversation,
                            messages: Sequence[Message] = ()) -> Conversation:
        refuse_nul("conversation", {"id": conversation.id, "user_id": conversation.user_id,
                                     "title": conversation.title, "model": conversation.model,
                                     "preprompt": conversation.preprompt})
        with self.transaction():
            self._exec(f"INSERT INTO conversations ({CONVERSATION_COLS}) VALUES "
                       f"(?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (conversation.id, conversation.user_id, conversation.title,
                        conversation.model, conversation.preprompt,
                        conversation.root_message_id, dumps(conversation.data),
                        epoch(conversation.created_at), epoch(conversation.updated_at)))
            self._insert_messages(messages, 0, conversation.id)
        return conversation

    def get_conversation(self, conversation_id: str, *,
                         user_id: str | None = None) -> Conversation:
        row = self._one(f"SELECT {CONVERSATION_COLS} FROM conversations WHERE id = ?",
                        (conversation_id,))
        if row is None or (user_id is not None and row[1] != user_id):
            raise NotFound(f"no conversation {conversation_id!r}")
        return read_conversation(row)

    def list_conversations(self, user_id: str, *, limit: int = 50,
                           offset: int = 0) -> list[Conversation]:
        return [read_conversation(row) for row in self._read(
            f"SELECT {CONVERSATION_COLS} FROM conversations WHERE user_id = ? "
            "ORDER BY updated_at DESC, id DESC LIMIT ? OFFSET ?", (user_id, limit, offset))]

    def count_conversations(self, user_id: str | None = None) -> int:
        if user_id is None:
            row = self._one("SELECT COUNT(*) FROM conversations")
        else:
            row = self._one("SELECT COUNT(*) FROM conversations WHERE user_id = ?", (user_id,))
        return int(row[0])

    def update_conversation(self, conversation_id: str, **fields: Any) -> Conversation:
        with self.transaction():
            return self._update_row("conversations", "conversation", CONVERSATION_COLS,  # type: ignore[no-any-return]
                                    read_conversation, conversation_id, fields)

    def delete_conversation(self, conversation_id: str, *, user_id: str | None = None) -> None:
        with self.transaction():
            sql, params = "DELETE FROM conversations WHERE id = ?", [conversation_id]
            if user_id is not None:
                sql += " AND user_id = ?"
                params.append(user_id)
            if self._exec(sql, params).rowcount != 1:
                raise NotFound(f"no conversation {conversation_id!r}")

    def delete_conversations(self, user_id: str) -> int:
        with self.transaction():
            return int(self._exec("DELETE FROM conversations WHERE user_id = ?",
                                  (user_id,)).rowcount)

    def add_message(self, message: Message) -> Message:
        refuse_nul("message", {"content": message.content, "role": message.role,
                                "id": message.id, "parent_id": message.parent_id})
        with self.transaction():
            touched = self._exec("UPDATE conversations SET updated_at = ? WHERE id = ?",
                                 (time.time(), message.conversation_id)).rowcount
            if touched != 1:
                raise NotFound(f"no conversation {message.conversation_id!r}")
            self._exec(f"INSERT INTO messages ({MESSAGE_COLS}, ord) VALUES "
                       "(?, ?, ?, ?, ?, ?, ?, ?, ?, (SELECT COALESCE(MAX(ord), -1) + 1 FROM "
                       "messages WHERE conversation_id = ?))",
                       (message.id, message.conversation_id, message.role, message.content,
                        message.parent_id, message.interrupted, dumps(message.data),
                        epoch(message.created_at), epoch(message.updated_at),
                        message.conversation_id))
        return message

    def update_message(self, message_id: str, **fields: Any) -> Message:
        with self.transaction():
            return self._update_row("messages", "message", MESSAGE_COLS, read_message,  # type: ignore[no-any-return]
                                    message_id, fields)

    def messages(self, conversation_id: str) -> list[Message]:
        return [read_message(row) for row in self._read(
            f"SELECT {MESSAGE_COLS} FROM messages WHERE conversation_id = ? ORDER BY ord",
            (conversation_id,))]

    def user_ids(self) -> list[str]:
        return [row[0] for row in self._read(
            "SELECT id FROM users UNION SELECT user_id FROM conversations "
            "UNION SELECT user_id FROM user_settings ORDER BY 1")]

    # users (additive: the RVF users collection keeps its documents here)
    def put_user(self, user_id: str, data: JSON) -> None:
        refuse_nul("user", {"id": user_id})
        now = time.time()
        with self.transaction():
            self._exec("INSERT INTO users (id, data, created_at, updated_at) VALUES (?, ?, ?, ?) "
                       "ON CONFLICT (id) DO UPDATE SET data = excluded.data, "
                       "updated_at = excluded.updated_at", (user_id, dumps(data), now, now))

    def get_user(self, user_id: str) -> JSON:
        row = self._one("SELECT data FROM users WHERE id = ?", (user_id,))
        if row is None:
            raise NotFound(f"no user {user_id!r}")
        return loads(row[0])  # type: ignore[no-any-return]

    def list_users(self) -> list[tuple[str, JSON]]:
        return [(row[0], loads(row[1]))
                for row in self._read("SELECT id, data FROM users ORDER BY id")]

    def get_user_settings(self, user_id: str) -> JSON:
        row = self._one("SELECT data FROM user_settings WHERE user_id = ?", (user_id,))
        return {} if row is None else dict(loads(row[0]))

    def put_user_settings(self, user_id: str, settings: JSON) -> JSON:
        with self.transaction():
            self._exec("INSERT INTO user_settings (user_id, data, updated_at) VALUES (?, ?, ?) "
                       "ON CONFLICT (user_id) DO UPDATE SET data = excluded.data, "
                       "updated_at = excluded.updated_at",
                       (user_id, dumps(settings), time.time()))
        return settings

    # -- whole-store views (RVF export) ---------------------------------------------------------
    def iter_conversations(self, batch: int = 500) -> Iterator[Conversation]:
        """Every conversation of every user, oldest first, read in pages."""
        last: tuple[float, str] = (-1e300, "")
        while True:
            rows = self._read(f"SELECT {CONVERSATION_COLS} FROM conversations WHERE "
                              "(created_at > ? OR (created_at = ? AND id > ?)) "
                              "ORDER BY created_at, id LIMIT ?",
                              (last[0], last[0], last[1], batch))
            for row in rows:
                yield read_conversation(row)
            if len(rows) < batch:
                return
            last = (rows[-1][7], rows[-1][0])

    def all_user_settings(self) -> list[tuple[str, JSON]]:
        return [(row[0], loads(row[1])) for row in self._read(
            "SELECT user_id, data FROM user_settings ORDER BY user_id")]
