"""NUL characters through the MCP tools, on SQLite and Postgres: each call is a tool error that
names the field and says nothing was stored, alike on both stores, and the server keeps
serving."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from test_tools import call, connect, refused

from ruflo.store.sql import SqlStore

NUL = "a\x00b"


async def test_nul_in_tool_arguments_is_refused_alike_on_both_stores(store: SqlStore,
                                                                     tmp_path: Path) -> None:
    async with connect(store, tmp_path) as client:
        hives: dict[str, dict[str, Any]] = {
            "name": {"name": NUL, "objective": "o"},  # refused by the tool's pattern
            "objective": {"name": "h1", "objective": NUL},
            "agents.0.name": {"name": "h2", "objective": "o", "agents": [{"name": NUL}]},
            "skills": {"name": "h3", "objective": "o",
                       "agents": [{"name": "ada", "skills": [NUL]}]},
        }
        for field, arguments in hives.items():
            text = await refused(client, "create_hive", **arguments)
            assert field in text, text
            assert "\\x00" in text, text  # the edge's pattern or the store's refusal
        text = await refused(client, "create_hive", name="h4", objective="o", workspace=NUL)
        assert "not an existing folder" in text
        assert store.list_hives() == []

        await call(client, "create_hive", name="h", objective="o", agents=[{"name": "ada"}])
        for field, arguments in {"title": {"title": NUL},
                                 "description": {"title": "t", "description": NUL},
                                 "skills": {"title": "t", "skills": ["x", NUL]}}.items():
            text = await refused(client, "post_task", hive="h", **arguments)
            assert field in text, text
            assert "\\x00" in text, text
        (hive,) = store.list_hives()
        assert store.list_tasks(hive.id) == []
        for field, arguments in {"content": {"key": "k", "content": NUL},
                                 "key": {"key": NUL, "content": "c"},
                                 "tags": {"key": "k", "content": "c", "tags": [NUL]}}.items():
            text = await refused(client, "memory_store", hive="h", **arguments)
            assert field in text, text
        task = (await call(client, "post_task", hive="h", title="t"))["task"]
        await call(client, "claim_next_task", hive="h", agent="ada")
        text = await refused(client, "complete_task", hive="h", task=task["id"], agent="ada",
                             result=NUL)
        assert "result" in text, text
        assert store.get_task(task["id"]).state == "claimed"
