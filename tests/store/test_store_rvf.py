"""RVF import/export: round trip keeps every conversation and message; malformed input imports
nothing; the CLI reports counts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ruflo.errors import ConfigError, Conflict
from ruflo.rvf import export_rvf, import_rvf


def upstream_file(path: Path) -> Path:
    """A file shaped like upstream's: a branched tree, an anonymous session, settings, users."""
    tree = [
        {"id": "m-sys", "from": "system", "content": "be brief", "ancestors": [],
         "children": ["m-u1"]},
        {"id": "m-u1", "from": "user", "content": "hi", "ancestors": ["m-sys"],
         "children": ["m-a1", "m-a1b"], "createdAt": "2025-03-01T10:00:00.000Z"},
        {"id": "m-a1", "from": "assistant", "content": "hello", "ancestors": ["m-sys", "m-u1"],
         "children": [], "reasoning": "greet", "updates": [{"type": "stream", "token": "he"}]},
        {"id": "m-a1b", "from": "assistant", "content": "hey there", "interrupted": True,
         "ancestors": ["m-sys", "m-u1"], "children": []},
    ]
    doc = {
        "rvf_version": "2.0", "format": "rvf-database",
        "collections": {
            "conversations": {
                "65f000000000000000000001": {
                    "_id": "65f000000000000000000001", "userId": "user-1", "model": "gpt-x",
                    "title": "Greetings", "rootMessageId": "m-sys", "messages": tree,
                    "preprompt": "be brief", "assistantId": "a-9",
                    "createdAt": "2025-03-01T10:00:00.000Z",
                    "updatedAt": "2025-03-01T10:05:00.000Z"},
                "65f000000000000000000002": {
                    "_id": "65f000000000000000000002", "sessionId": "sess-7", "model": "gpt-x",
                    "title": "Linear", "messages": [
                        {"id": "l1", "from": "user", "content": "one"},
                        {"id": "l2", "from": "assistant", "content": "two"}],
                    "createdAt": "2025-03-02T10:00:00.000Z",
                    "updatedAt": "2025-03-02T10:00:00.000Z"},
            },
            "users": {"user-1": {"_id": "user-1", "username": "ada", "name": "Ada"}},
            "settings": {"65f0000000000000000000aa": {
                "_id": "65f0000000000000000000aa", "userId": "user-1", "activeModel": "gpt-x",
                "customPrompts": {"gpt-x": "pirate"}, "hidePromptExamples": {}}},
            "sessions": {},
        },
        "tenants": {},
        "metadata": {"created_at": "2025-03-01T10:00:00Z", "updated_at": "2025-03-02T10:00:00Z",
                     "doc_count": 4},
    }
    path.write_text(json.dumps(doc))
    return path


def snapshot(store: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for conversation in store.iter_conversations():
        out[conversation.id] = (
            conversation.user_id, conversation.title, conversation.model,
            conversation.root_message_id, conversation.preprompt, conversation.created_at,
            [(m.id, m.role, m.content, m.parent_id, m.interrupted, m.data)
             for m in store.messages(conversation.id)])
    return out


def test_import_maps_the_tree_and_owners(store: Any, tmp_path: Path) -> None:
    counts = import_rvf(store, upstream_file(tmp_path / "ruvocal.rvf.json"))
    assert (counts.conversations, counts.messages, counts.users, counts.settings) == (2, 6, 1, 1)
    messages = {m.id: m for m in store.messages("65f000000000000000000001")}
    assert messages["m-a1b"].parent_id == "m-u1"
    assert messages["m-a1b"].interrupted
    assert messages["m-sys"].parent_id is None
    assert messages["m-a1"].data["reasoning"] == "greet"
    assert store.get_conversation("65f000000000000000000002").user_id == "sess-7"
    assert store.get_user_settings("user-1")["customPrompts"] == {"gpt-x": "pirate"}
    assert store.get_user("user-1")["username"] == "ada"


def test_round_trip_keeps_every_conversation_and_message(store: Any, store_url: str,
                                                         tmp_path: Path) -> None:
    source = upstream_file(tmp_path / "in.rvf.json")
    import_rvf(store, source)
    before = snapshot(store)
    out = tmp_path / "out.rvf.json"
    counts = export_rvf(store, out)
    assert counts.conversations == 2
    assert counts.messages == 6
    exported = json.loads(out.read_text())
    assert exported["rvf_version"] == "2.0"
    assert exported["format"] == "rvf-database"
    assert exported["metadata"]["doc_count"] == 4
    first = exported["collections"]["conversations"]["65f000000000000000000001"]
    by_id = {m["id"]: m for m in first["messages"]}
    original = json.loads(source.read_text())["collections"]["conversations"][
        "65f000000000000000000001"]["messages"]
    for message in original:
        assert by_id[message["id"]]["ancestors"] == message["ancestors"]
        assert by_id[message["id"]]["children"] == message["children"]
    assert first["assistantId"] == "a-9"
    assert first["userId"] == "user-1"
    assert not list(tmp_path.glob(".out.rvf.json.*")), "no temp file left behind"

    # Into a second, empty store: the same conversations and messages.
    from ruflo.store import open_store

    other_url = f"sqlite:///{tmp_path / 'other.db'}"
    other = open_store(other_url)
    try:
        import_rvf(other, out)
        assert snapshot(other) == before
        assert other.get_user_settings("user-1") == store.get_user_settings("user-1")
    finally:
        other.close()


MALFORMED = {
    "not-json": "{\"rvf_version\": \"2.0\", ",
    "wrong-version": json.dumps({"rvf_version": "1.0", "collections": {}}),
    "top-level-list": "[]",
    "bad-role": json.dumps({"rvf_version": "2.0", "collections": {"conversations": {"c": {
        "_id": "c", "messages": [{"id": "m", "from": "robot", "content": "x"}]}}}}),
    "dangling-parent": json.dumps({"rvf_version": "2.0", "collections": {"conversations": {"c": {
        "_id": "c", "messages": [{"id": "m", "from": "user", "content": "x",
                                  "ancestors": ["ghost"]}]}}}}),
    "bad-date": json.dumps({"rvf_version": "2.0", "collections": {"conversations": {"c": {
        "_id": "c", "createdAt": "yesterday", "messages": []}}}}),
    "messages-not-list": json.dumps({"rvf_version": "2.0", "collections": {"conversations": {
        "c": {"_id": "c", "messages": "hi"}}}}),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_file_imports_nothing(store: Any, tmp_path: Path, name: str) -> None:
    # A valid conversation first in the file: it must not be imported either.
    path = tmp_path / "bad.rvf.json"
    path.write_text(MALFORMED[name])
    with pytest.raises(ConfigError, match="nothing was imported"):
        import_rvf(store, path)
    assert store.count_conversations() == 0
    assert store.user_ids() == []


def test_a_late_error_rolls_back_everything(store: Any, tmp_path: Path) -> None:
    good = upstream_file(tmp_path / "good.rvf.json")
    import_rvf(store, good)
    with pytest.raises(Conflict, match="nothing was imported"):
        import_rvf(store, good)  # same ids again: the clash comes after users and settings
    assert store.count_conversations() == 2


@pytest.mark.integration
def test_cli_import_export_report_counts(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["RUFLO_DATA_DIR"] = str(tmp_path / "data")
    source = upstream_file(tmp_path / "ruvocal.rvf.json")

    def ruflo(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-c", "from ruflo.cli import main; main()", *args], env=env,
                              capture_output=True, text=True, timeout=60, check=False)

    done = ruflo("rvf", "import", str(source))
    assert done.returncode == 0, done.stderr
    assert "2 conversations, 6 messages, 1 users, 1 settings" in done.stdout
    out = tmp_path / "export.rvf.json"
    done = ruflo("rvf", "export", str(out))
    assert done.returncode == 0, done.stderr
    assert json.loads(out.read_text())["rvf_version"] == "2.0"
    bad = tmp_path / "bad.json"
    bad.write_text("{oops")
    done = ruflo("rvf", "import", str(bad))
    assert done.returncode == 2
    assert "not valid JSON" in done.stderr
    assert "Traceback" not in done.stderr
