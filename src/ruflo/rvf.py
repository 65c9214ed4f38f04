"""Upstream ruvocal's RVF 2.0 file (`ruvocal.rvf.json`): import into the store in one
transaction, export atomically. Depends on the core model and the Store protocol.

Conversations embed their messages, whose tree is kept as `ancestors`/`children` id lists;
ruflo keeps a `parent_id` per message (the last ancestor) and rebuilds the lists on export.
Fields ruflo has no column for are kept in `data` and written back unchanged.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ruflo.errors import ConfigError
from ruflo.model import JSON, Conversation, Message, utcnow

RVF_VERSION = "2.0"
MAX_RVF_BYTES = 1024 * 1024 * 1024
"""A file larger than this is refused unread (it is read whole, then parsed whole)."""
MAX_RVF_DEPTH = 64
"""Deepest nesting of arrays and objects an RVF file may have. Upstream documents nest a few
levels; the free-form fields ruflo keeps are stored as JSON and read back by parsers that recurse,
so a hostile depth is refused at the door."""
ROLES = ("user", "assistant", "system")
_CONVERSATION_KEYS = {"_id", "title", "model", "preprompt", "rootMessageId", "messages",
                      "createdAt", "updatedAt"}
_MESSAGE_KEYS = {"id", "from", "content", "ancestors", "children", "interrupted", "createdAt",
                 "updatedAt"}


@dataclass(frozen=True, slots=True)
class RvfCounts:
    conversations: int = 0
    messages: int = 0
    users: int = 0
    settings: int = 0
    skipped_tenants: int = 0
    skipped_collections: tuple[str, ...] = ()

    def summary(self) -> str:
        text = (f"{self.conversations} conversations, {self.messages} messages, "
                f"{self.users} users, {self.settings} settings")
        if self.skipped_tenants:
            text += f"; {self.skipped_tenants} tenants not imported"
        if self.skipped_collections:
            text += f"; collections not imported: {', '.join(self.skipped_collections)}"
        return text


@dataclass(frozen=True, slots=True)
class RvfContent:
    conversations: list[tuple[Conversation, list[Message]]]
    users: list[tuple[str, JSON]]
    settings: list[tuple[str, JSON]]
    counts: RvfCounts


class _Malformed(Exception):
    pass


def _parse_time(value: Any, where: str) -> datetime:
    if value is None:
        return utcnow()
    if isinstance(value, dict) and "$date" in value:
        value = value["$date"]
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value / 1000, UTC)
        except (OverflowError, OSError, ValueError):
            raise _Malformed(f"{where}: the date {value!r} (milliseconds since 1970) is out of "
                             "range") from None
    if not isinstance(value, str):
        raise _Malformed(f"{where}: a date must be an ISO string, not {type(value).__name__}")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise _Malformed(f"{where}: {value!r} is not an ISO date") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _format_time(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _owner(doc: JSON) -> str:
    owner = doc.get("userId") or doc.get("sessionId")
    if isinstance(owner, dict) and isinstance(owner.get("$oid"), str):
        owner = owner["$oid"]  # an ObjectId as Mongo's extended JSON writes it
    if owner and not isinstance(owner, str | int):
        raise _Malformed(f"document {doc.get('_id', '?')!r}: userId/sessionId must be a "
                         f"string, not {type(owner).__name__}")
    return str(owner) if owner else "anonymous"


def _doc_map(value: Any, where: str) -> dict[str, JSON]:
    if not isinstance(value, dict):
        raise _Malformed(f"{where} must be an object of documents keyed by _id")
    for key, doc in value.items():
        if not isinstance(doc, dict):
            raise _Malformed(f"{where}[{key!r}] must be a document (an object)")
    return value


def _conversation(key: str, doc: JSON) -> tuple[Conversation, list[Message]]:
    where = f"conversation {key}"
    conversation_id = str(doc.get("_id", key))
    messages_raw = doc.get("messages", [])
    if not isinstance(messages_raw, list):
        raise _Malformed(f"{where}: messages must be a list")
    messages: list[Message] = []
    seen: set[str] = set()
    for index, raw in enumerate(messages_raw):
        at = f"{where}, message {index}"
        if not isinstance(raw, dict):
            raise _Malformed(f"{at}: must be an object")
        message_id = raw.get("id")
        if not isinstance(message_id, str) or not message_id:
            raise _Malformed(f"{at}: id must be a non-empty string")
        if message_id in seen:
            raise _Malformed(f"{at}: id {message_id} appears twice")
        seen.add(message_id)
        role = raw.get("from")
        if role not in ROLES:
            raise _Malformed(f"{at}: from must be one of {', '.join(ROLES)}, not {role!r}")
        content = raw.get("content", "")
        if not isinstance(content, str):
            raise _Malformed(f"{at}: content must be a string")
        ancestors = raw.get("ancestors") or []
        if not isinstance(ancestors, list) or not all(isinstance(a, str) for a in ancestors):
            raise _Malformed(f"{at}: ancestors must be a list of message ids")
        created = _parse_time(raw.get("createdAt"), at)
        messages.append(Message(
            id=message_id, conversation_id=conversation_id, role=role, content=content,
            parent_id=ancestors[-1] if ancestors else None,
            interrupted=bool(raw.get("interrupted", False)),
            data={k: v for k, v in raw.items() if k not in _MESSAGE_KEYS},
            created_at=created, updated_at=_parse_time(raw.get("updatedAt", raw.get(
                "createdAt")), at)))
    for message in messages:
        if message.parent_id is not None and message.parent_id not in seen:
            raise _Malformed(f"{where}: message {message.id}'s parent {message.parent_id} is not "
                             "in the conversation")
    root = doc.get("rootMessageId")
    for name in ("title", "model"):
        if name in doc and not isinstance(doc[name], str):
            raise _Malformed(f"{where}: {name} must be a string")
    for name in ("preprompt", "rootMessageId"):
        if doc.get(name) is not None and not isinstance(doc[name], str):
            raise _Malformed(f"{where}: {name} must be a string or null, not "
                             f"{type(doc[name]).__name__}")
    created = _parse_time(doc.get("createdAt"), where)
    conversation = Conversation(
        id=conversation_id, user_id=_owner(doc), title=doc.get("title") or "",
        model=doc.get("model") or "", preprompt=doc.get("preprompt"),
        root_message_id=None if root is None else str(root),
        data={k: v for k, v in doc.items() if k not in _CONVERSATION_KEYS},
        created_at=created, updated_at=_parse_time(doc.get("updatedAt", doc.get("createdAt")),
                                                    where))
    return conversation, messages


def parse_rvf(path: Path) -> RvfContent:
    """Read and validate an RVF file fully, before anything touches the store."""
    import orjson

    try:
        size = path.stat().st_size
        if size > MAX_RVF_BYTES:
            raise ConfigError(f"{path} is {size / 2**30:.1f} GiB, more than the "
                              f"{MAX_RVF_BYTES // 2**30} GiB an RVF file may be; nothing was "
                              "imported")
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"cannot read {path}: {error.strerror}; nothing was imported") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not UTF-8 text, so not an RVF file; nothing was "
                          "imported") from None
    try:
        # orjson, not json: it refuses nesting past 1024 levels with an error where json
        # recurses into a RecursionError.
        document = orjson.loads(text)
    except orjson.JSONDecodeError as error:
        why = error.msg
        if "depth" in why or "recursion" in why.lower():
            why = f"nested more than {MAX_RVF_DEPTH} levels deep"
        raise ConfigError(f"{path} is not valid JSON (line {error.lineno}, column {error.colno}: "
                          f"{why}); nothing was imported") from None
    try:
        _check_depth(document)
        return _content(document)
    except _Malformed as error:
        raise ConfigError(f"{path} is not a valid RVF file: {error}; nothing was "
                          "imported") from None


def _check_depth(document: Any) -> None:
    """Refuse nesting past MAX_RVF_DEPTH (walked with a stack, not recursion)."""
    stack: list[tuple[Any, int]] = [(document, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children: Any = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > MAX_RVF_DEPTH:
            raise _Malformed(f"it is nested more than {MAX_RVF_DEPTH} levels deep")
        stack.extend((child, depth + 1) for child in children
                     if isinstance(child, dict | list))


def _content(document: Any) -> RvfContent:
    if not isinstance(document, dict):
        raise _Malformed("the top level must be an object")
    version = document.get("rvf_version")
    if not isinstance(version, str) or not version.startswith("2."):
        raise _Malformed(f"rvf_version must be 2.x, not {version!r}")
    if document.get("format", "rvf-database") != "rvf-database":
        raise _Malformed(f"format must be rvf-database, not {document.get('format')!r}")
    collections = document.get("collections", {})
    if not isinstance(collections, dict):
        raise _Malformed("collections must be an object")
    conversations = [_conversation(str(key), doc) for key, doc in
                     _doc_map(collections.get("conversations", {}),
                              "collections.conversations").items()]
    users = [(str(doc.get("_id", key)), {k: v for k, v in doc.items() if k != "_id"})
             for key, doc in _doc_map(collections.get("users", {}), "collections.users").items()]
    settings = [(_owner(doc), {k: v for k, v in doc.items()
                               if k not in ("_id", "userId", "sessionId")})
                for doc in _doc_map(collections.get("settings", {}),
                                    "collections.settings").values()]
    owners = [owner for owner, _ in settings]
    if len(set(owners)) != len(owners):
        raise _Malformed("two settings documents belong to the same user")
    tenants = document.get("tenants", {})
    skipped = tuple(sorted(name for name, docs in collections.items()
                           if name not in ("conversations", "users", "settings")
                           and isinstance(docs, dict) and docs))
    counts = RvfCounts(conversations=len(conversations),
                       messages=sum(len(m) for _, m in conversations), users=len(users),
                       settings=len(settings),
                       skipped_tenants=len(tenants) if isinstance(tenants, dict) else 0,
                       skipped_collections=skipped)
    return RvfContent(conversations, users, settings, counts)


def import_rvf(store: Any, path: Path) -> RvfCounts:
    """Import conversations (with message trees), users and settings in one transaction.

    Nothing is imported when the file is malformed or when any of it clashes with the store.
    """
    from ruflo.errors import Conflict

    content = parse_rvf(path)
    try:
        with store.transaction():
            for user_id, data in content.users:
                store.put_user(user_id, data)
            for user_id, data in content.settings:
                store.put_user_settings(user_id, data)
            for conversation, messages in content.conversations:
                store.create_conversation(conversation, messages)
    except Conflict as error:
        raise Conflict(f"importing {path} clashed with the store ({error}); nothing was "
                       "imported") from None
    return content.counts


def _message_doc(message: Message, parents: dict[str, str | None],
                 children: dict[str, list[str]]) -> JSON:
    ancestors: list[str] = []
    parent = message.parent_id
    while parent is not None and parent not in ancestors:
        ancestors.append(parent)
        parent = parents.get(parent)
    doc: JSON = {"id": message.id, "from": message.role, "content": message.content}
    doc.update(message.data)
    doc["ancestors"] = list(reversed(ancestors))
    doc["children"] = children.get(message.id, [])
    if message.interrupted:
        doc["interrupted"] = True
    doc["createdAt"] = _format_time(message.created_at)
    doc["updatedAt"] = _format_time(message.updated_at)
    return doc


def _conversation_doc(conversation: Conversation, messages: list[Message]) -> JSON:
    parents = {m.id: m.parent_id for m in messages}
    children: dict[str, list[str]] = {}
    for m in messages:
        if m.parent_id is not None:
            children.setdefault(m.parent_id, []).append(m.id)
    doc: JSON = {"_id": conversation.id}
    doc.update(conversation.data)
    if "userId" not in doc and "sessionId" not in doc and conversation.user_id != "anonymous":
        doc["userId"] = conversation.user_id
    doc.update({"title": conversation.title, "model": conversation.model,
                "messages": [_message_doc(m, parents, children) for m in messages],
                "createdAt": _format_time(conversation.created_at),
                "updatedAt": _format_time(conversation.updated_at)})
    if conversation.preprompt is not None:
        doc["preprompt"] = conversation.preprompt
    if conversation.root_message_id is not None:
        doc["rootMessageId"] = conversation.root_message_id
    return doc


def _settings_id(user_id: str) -> str:
    return hashlib.sha1(f"settings:{user_id}".encode()).hexdigest()[:24]


def rvf_document(store: Any) -> tuple[JSON, RvfCounts]:
    conversations: dict[str, JSON] = {}
    messages = 0
    for conversation in _all_conversations(store):
        listed = store.messages(conversation.id)
        messages += len(listed)
        conversations[conversation.id] = _conversation_doc(conversation, listed)
    users = {user_id: {"_id": user_id, **data} for user_id, data in store.list_users()}
    settings: dict[str, JSON] = {}
    for user_id, data in store.all_user_settings():
        doc = {"_id": _settings_id(user_id), "userId": user_id, **data}
        settings[doc["_id"]] = doc
    now = _format_time(utcnow())
    document: JSON = {
        "rvf_version": RVF_VERSION, "format": "rvf-database",
        "collections": {"conversations": conversations, "users": users, "settings": settings},
        "tenants": {},
        "metadata": {"created_at": now, "updated_at": now,
                     "doc_count": len(conversations) + len(users) + len(settings)},
    }
    return document, RvfCounts(conversations=len(conversations), messages=messages,
                               users=len(users), settings=len(settings))


def _all_conversations(store: Any) -> Iterator[Conversation]:
    yield from store.iter_conversations()


def export_rvf(store: Any, path: Path) -> RvfCounts:
    """Write the store's chat data as RVF 2.0: temp file in the same folder, fsync, rename,
    fsync the folder. An existing file at `path` is replaced only by a complete new one."""
    document, counts = rvf_document(store)
    path = path.resolve()
    folder = path.parent
    if not folder.is_dir():
        raise ConfigError(f"cannot export to {path}: folder {folder} does not exist")
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(document, handle, ensure_ascii=False, separators=(",", ":"))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return counts
