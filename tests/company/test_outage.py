"""Company mode through a gateway outage: the managers' planning calls go through the gateway
too, so a 503 there (then refused connections) pauses the hive "gateway unreachable" like a
worker's call would, with nothing escalated or failed, and the hive resumes by itself and ends
done when the gateway is back. On SQLite and Postgres."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ruflo.engine.board_engine import LiveParams
from ruflo.engine.control import GATEWAY_UNREACHABLE
from ruflo.gateway.client import GatewayClient, RetryPolicy
from ruflo.gateway.scripted import ScriptedGateway
from ruflo.model import HiveStatus, TaskState
from ruflo.store.sql import SqlStore
from waiting import until

from .conftest import KEY, VERIFY_ALL, company_script, engine, make_company

OUTAGE = LiveParams(lease_seconds=5.0, time_unit=0.05, poll_seconds=0.2, probe_initial=0.05,
                    probe_max=0.2)


@pytest.mark.slow
async def test_a_planning_call_meeting_an_outage_pauses_and_the_company_resumes_by_itself(
        any_store: SqlStore, gateway_server: ScriptedGateway, tmp_path: Path) -> None:
    store = any_store
    company_script(gateway_server)
    hive = make_company(store, tmp_path, config={"verify": VERIFY_ALL})
    client = GatewayClient(gateway_server.base_url, KEY, store=store,
                           retry=RetryPolicy(attempts=2, timeout=5, wait_initial=0.01,
                                             wait_max=0.05))
    gateway_server.set_fault("unavailable")
    running = asyncio.create_task(engine(store, hive.id, client, OUTAGE).run())
    try:
        await until(lambda: store.get_hive(hive.id).pause_reason == GATEWAY_UNREACHABLE,
                    what="the hive never paused for the gateway")
        looked = gateway_server.models_count
        await until(lambda: gateway_server.models_count >= looked + 2,
                    what="the engine did not look at the gateway again")
        gateway_server.stop()  # connections refused
        gateway_server.clear_fault()
        assert not running.done()
        gateway_server.start()

        final = await asyncio.wait_for(running, 60)
    finally:
        running.cancel()
        await client.aclose()

    assert final.status is HiveStatus.DONE, final.pause_reason
    first = gateway_server.requests[0]
    assert [t["function"]["name"] for t in first["tools"]] == ["plan"], \
        "the call that met the outage was the ceo's planning call"
    assert {t.state for t in store.list_tasks(hive.id)} == {TaskState.DONE}
    assert not store.events(hive.id, kinds=["task_failed"])
    assert not store.events(hive.id, kinds=["agent_lost"]), "every agent worked on after it"
    assert not store.events(hive.id, kinds=["ticket_escalated", "plan_fallback"]), \
        "an outage is nobody's failure: nothing was escalated or planned by fallback"
    paused = store.events(hive.id, kinds=["hive_paused"])
    assert [e.data["reason"] for e in paused] == [GATEWAY_UNREACHABLE] * len(paused)
    assert len(store.events(hive.id, kinds=["gateway_back"])) == len(paused) >= 1
    assert max(t.attempts for t in store.list_tasks(hive.id)) <= 3
