"""Every event kind ruflo records is a member of EventKind: a scripted comparison (swarm, company
and solo live on a built-in workload, ScriptedGateway over real HTTP, the real SQLite store)
records only members, and the store's check refuses a kind that is not one."""

from __future__ import annotations

from pathlib import Path

import pytest

from ruflo.cli import run
from ruflo.errors import Unstorable
from ruflo.event_kinds import EventKind, known_event_kind
from ruflo.store import open_store


@pytest.mark.slow
def test_every_kind_a_scripted_run_records_is_an_event_kind(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("OPENAI_BASE_URL", "LITELLM_BASE_URL", "OPENAI_API_KEY", "DATABASE_URL",
                "RUFLO_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("RUFLO_DATA_DIR", str(tmp_path / "data"))
    assert run(["compare", "ticket", "--modes", "swarm,company,solo", "--seeds", "1",
                "--agents", "3", "--scripted", "--json"]) == 0
    store = open_store(f"sqlite:///{tmp_path / 'data' / 'ruflo.db'}")
    try:
        hives = store.list_hives()
        recorded = {event.kind for hive in hives for event in store.events(hive.id)}
    finally:
        store.close()
    assert len(hives) == 3
    assert recorded - set(EventKind) == set()
    # The run went through the engine, the company, the agents and the comparison.
    assert {EventKind.ENGINE_STARTED, EventKind.TICKET_PLANNED, EventKind.TOOL_CALL,
            EventKind.TASK_DONE, EventKind.COMPARE_RUN_STARTED} <= recorded


def test_the_store_check_names_a_member_and_refuses_anything_else() -> None:
    assert known_event_kind("task_done") is EventKind.TASK_DONE
    assert known_event_kind(EventKind.MCP_CALL) is EventKind.MCP_CALL
    for bad in ("task_finished", "", "TASK_DONE", "task_done "):
        with pytest.raises(Unstorable, match=r"unknown event kind .*not recorded"):
            known_event_kind(bad)


def test_each_kind_is_its_name_in_lowercase() -> None:
    assert [kind.value for kind in EventKind] == [kind.name.lower() for kind in EventKind]
