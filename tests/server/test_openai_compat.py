"""A hive as a model: the openai SDK, over loopback against a real server (live engine,
ScriptedGateway as the agents' model), lists ruflo's models, streams a `ruflo/swarm` completion
that starts a hive and ends with the verified result (the hive is then in `ruflo hive list`),
gets the same without streaming, is told clearly about unknown models and empty questions, and
needs a token when the server asks for one."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openai
import pytest
from server_harness import Served

from agent_scripts import plan_rule, work_rules

FAST = {"time_unit": 0.05, "lease_seconds": 2.0}
SRC = Path(__file__).resolve().parents[2] / "src"


def sdk(served: Served, key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{served.url}/v1", api_key=key, max_retries=0, timeout=60.0)


def crew(*names: str) -> dict[str, Any]:
    return {"ruflo": {"agents": 1, "config": FAST, "tasks": [
        {"title": name, "verify": f"grep -qx {name} {name}.txt"} for name in names]}}


def hive_list(served: Served) -> str:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OPENAI_", "LITELLM_", "RUFLO_", "DATABASE_"))}
    env.update(RUFLO_DATA_DIR=str(served.settings.data_dir), RUFLO_CONFIG="",
               PYTHONPATH=str(SRC), COLUMNS="200")
    done = subprocess.run([str(Path(sys.executable).parent / "ruflo"), "hive", "list"], env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.timeout(120)
def test_the_sdk_streams_a_swarm_completion_that_runs_a_hive_to_its_verified_result(
        live_server: Callable[..., Served]) -> None:
    served = live_server(*work_rules("t1"))
    client = sdk(served)
    assert {m.id for m in client.models.list()} == {"ruflo/swarm", "ruflo/company"}

    stream = client.chat.completions.create(
        model="ruflo/swarm", stream=True, extra_body=crew("t1"),
        messages=[{"role": "system", "content": "be brief"},
                  {"role": "user", "content": "write t1"}])
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)

    assert len(chunks) > 3  # progress arrived as it happened, not in one piece
    assert chunks[-1].choices[0].finish_reason == "stop"
    (hive,) = served.store.list_hives()
    assert hive.objective == "write t1"
    assert hive.status.value == "done"
    assert text.startswith(f"Started hive {hive.id}: {served.url}/hives/{hive.id}")
    assert "task done: t1" in text
    assert "done; objective verified" in text
    assert text.rstrip().endswith("- t1: done (verified)\n\nThe hive: "
                                  f"{served.url}/hives/{hive.id}".rstrip())
    assert hive.id in hive_list(served)


@pytest.mark.timeout(120)
def test_without_streaming_the_answer_is_the_whole_story_and_the_objective_is_planned(
        live_server: Callable[..., Served]) -> None:
    served = live_server(plan_rule("t2"), *work_rules("t2"))
    answer = sdk(served).chat.completions.create(
        model="ruflo/swarm", messages=[{"role": "user", "content": "earlier question"},
                                       {"role": "assistant", "content": "earlier answer"},
                                       {"role": "user", "content": [{"type": "text",
                                                                     "text": "t2"}]}],
        extra_body={"ruflo": {"agents": 1, "config": {**FAST, "verify": "grep -qx t2 t2.txt"}}})

    (hive,) = served.store.list_hives()
    assert hive.objective == "t2"
    assert answer.choices[0].finish_reason == "stop"
    content = answer.choices[0].message.content or ""
    assert "- t2: done" in content
    assert "done; objective verified" in content
    assert answer.model_extra is not None
    assert answer.model_extra["ruflo"]["hive_id"] == hive.id
    assert answer.usage is not None
    assert answer.usage.completion_tokens > 0


def test_bad_requests_get_one_clear_line_and_start_nothing(
        make_server: Callable[..., Served]) -> None:
    served = make_server()
    client = sdk(served)
    with pytest.raises(openai.NotFoundError, match="no model 'gpt-4'; ruflo offers"):
        client.chat.completions.create(model="gpt-4",
                                       messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.UnprocessableEntityError, match="no user message with text"):
        client.chat.completions.create(model="ruflo/swarm",
                                       messages=[{"role": "user", "content": "  "}])
    with pytest.raises(openai.UnprocessableEntityError, match=r"ruflo\.objective is not"):
        client.chat.completions.create(model="ruflo/swarm", extra_body={
            "ruflo": {"objective": "other"}}, messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.UnprocessableEntityError, match=r"invalid request: body\.ruflo\.agents"):
        client.chat.completions.create(model="ruflo/swarm", extra_body={
            "ruflo": {"agents": "many"}}, messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.UnprocessableEntityError):
        client.chat.completions.create(model="ruflo/swarm", messages=[])
    assert served.store.list_hives() == []


def test_a_process_agent_needs_an_operator_here_too(make_server: Callable[..., Served]) -> None:
    from ruflo.server.auth import hash_token

    guarded = make_server(auth="token")
    guarded.store.create_token(token_id="t1", name="t", user_id="ana",
                               token_hash=hash_token("rfl_plain"))
    with pytest.raises(openai.AuthenticationError):
        sdk(guarded).models.list()
    with pytest.raises(openai.AuthenticationError):
        sdk(guarded).chat.completions.create(model="ruflo/swarm",
                                             messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.PermissionDeniedError, match="no hive was created"):
        sdk(guarded, "rfl_plain").chat.completions.create(
            model="ruflo/swarm", messages=[{"role": "user", "content": "x"}],
            extra_body={"ruflo": {"agents": [{"name": "sh", "adapter": "process",
                                              "adapter_config": {"command": ["true"]}}]}})
    assert guarded.store.list_hives() == []
    assert [m.id for m in sdk(guarded, "rfl_plain").models.list()] == ["ruflo/swarm",
                                                                        "ruflo/company"]


def test_a_cross_site_page_cannot_start_a_hive(make_server: Callable[..., Served]) -> None:
    served = make_server()
    refused = served.client.post("/v1/chat/completions", headers={
        "Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}, json={
        "model": "ruflo/swarm", "messages": [{"role": "user", "content": "x"}]})
    assert refused.status_code == 403
    form = served.client.post("/v1/chat/completions", content=b"model=ruflo/swarm",
                              headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert form.status_code in (403, 415)
    assert served.store.list_hives() == []
