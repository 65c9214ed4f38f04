"""/metrics' new families: per-model call histograms from the gateway client, and open tasks
per running hive read from the store."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from ruflo.gateway.base import CallContext
from ruflo.gateway.client import GatewayClient
from ruflo.gateway.scripted import ScriptedGateway
from ruflo.model import Hive, HiveStatus, Mode, Task
from ruflo.server.metrics import ServerMetrics
from ruflo.store import open_store
from ruflo.store.sql import SqlStore


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlStore]:
    opened = open_store(f"sqlite:///{tmp_path / 'ruflo.db'}")
    yield opened
    opened.close()


def value(text: str, line: str) -> float:
    found = re.search("^" + re.escape(line) + r" (\S+)$", text, re.M)
    assert found, f"{line} not in /metrics"
    return float(found.group(1))


async def test_call_histograms_and_board_depth(store: SqlStore) -> None:
    store.create_hive(Hive(id="h", name="h", mode=Mode.SWARM, objective="o"),
                      tasks=[Task(id=f"t{n}", hive_id="h", title=f"t{n}") for n in range(3)])
    store.create_hive(Hive(id="g", name="g", mode=Mode.SWARM, objective="o"),
                      tasks=[Task(id="u", hive_id="g", title="u")])
    store.set_hive_status("g", HiveStatus.DONE)
    gateway = ScriptedGateway({"models": ["histogram-model"], "default": {
        "content": "hello", "usage": {"prompt_tokens": 100, "completion_tokens": 7}}})
    gateway.start()
    try:
        before = ServerMetrics().render(None)
        async with GatewayClient(gateway.base_url, "k", store=store) as client:
            for _ in range(2):
                await client.chat([{"role": "user", "content": "hi"}],
                                  model="histogram-model", context=CallContext(hive_id="h"))
    finally:
        gateway.stop()
    assert 'model="histogram-model"' not in before
    text = ServerMetrics().render(store)
    series = 'ruflo_model_prompt_tokens_count{model="histogram-model"}'
    assert value(text, series) == 2
    assert value(text, 'ruflo_model_prompt_tokens_sum{model="histogram-model"}') == 200
    assert value(text, 'ruflo_model_prompt_tokens_bucket{model="histogram-model",le="64"}') == 0
    assert value(text, 'ruflo_model_prompt_tokens_bucket{model="histogram-model",le="256"}') == 2
    assert value(text, 'ruflo_model_completion_tokens_sum{model="histogram-model"}') == 14
    assert value(text, 'ruflo_model_call_seconds_count{model="histogram-model"}') == 2
    assert value(text, 'ruflo_model_call_seconds_bucket{model="histogram-model",le="+Inf"}') == 2
    assert value(text, 'ruflo_board_open_tasks{hive="h"}') == 3
    assert 'ruflo_board_open_tasks{hive="g"}' not in text, "only running hives"
