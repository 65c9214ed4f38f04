"""`actions:` blocks in workload and org files: the hive's and each agent's policy, checked when
the file is read."""

from __future__ import annotations

import textwrap

import pytest

from ruflo.errors import PolicyError
from ruflo.workload import parse_org, parse_workload

WORKLOAD = textwrap.dedent("""\
    name: tidy
    actions:
      write: ask
      run_command:
        default: allow
        rules:
          - glob: "make deploy*"
            decision: deny
            why: deploys are for people
    agents:
      - name: ada
        skills: [python]
        actions:
          write: allow
    tasks:
      - id: t1
""")


def test_a_workload_carries_the_hive_and_agent_policies() -> None:
    workload = parse_workload(WORKLOAD)
    assert workload.actions == {"write": "ask", "run_command": {
        "default": "allow", "rules": [{"glob": "make deploy*", "decision": "deny",
                                       "why": "deploys are for people"}]}}
    assert workload.agents[0].adapter_config["actions"] == {"write": "allow"}


def test_an_org_file_carries_them_too() -> None:
    org = parse_org(textwrap.dedent("""\
        actions: {merge: ask, post_subtasks: deny}
        agents:
          - name: ceo
          - name: dev
            reports_to: ceo
            actions: {run_command: deny}
    """))
    assert org.actions == {"post_subtasks": "deny", "merge": "ask"}
    assert org.agents[1].adapter_config["actions"] == {"run_command": "deny"}
    assert "actions" not in org.agents[0].adapter_config


@pytest.mark.parametrize(("text", "said"), [
    (WORKLOAD.replace("write: ask", "wirte: ask"), "unknown action 'wirte'"),
    (WORKLOAD.replace("decision: deny", "decision: never"), "unknown decision 'never'"),
    (WORKLOAD.replace("write: allow", "write: [allow]"), "agent ada: actions: 1 problem"),
    (WORKLOAD.replace('glob: "make deploy*"', 'regex: "make ("'), "does not compile"),
])
def test_bad_blocks_are_refused_naming_the_file_and_the_problem(text: str, said: str) -> None:
    with pytest.raises(PolicyError) as refused:
        parse_workload(text)
    assert said in str(refused.value)
    assert "nothing was changed" in str(refused.value)
