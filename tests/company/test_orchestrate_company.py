"""`ruflo orchestrate --mode company --org ORG.yaml` end to end (a real subprocess against a
ScriptedGateway): the org file's bounds and approval policy reach the stored hive, and a bad
org file is refused with nothing run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ruflo.gateway.scripted import ScriptedGateway
from ruflo.store import open_store

from .conftest import KEY, PLAN_USAGE, company_script

ORG = """
name: greeter-co
approvals: {budget_override: ask, hire: reject}
max_hires: 1
agents:
  - {name: ceo, role: ceo, capabilities: "runs the company, plans the objective"}
  - {name: eng-lead, role: manager, reports_to: ceo, capabilities: leads the python engineers}
  - {name: docs-lead, role: manager, reports_to: ceo, capabilities: leads the writers}
  - {name: dev-1, skills: python, reports_to: eng-lead}
  - {name: dev-2, skills: python, reports_to: eng-lead}
  - {name: writer-1, skills: docs, reports_to: docs-lead}
  - {name: writer-2, skills: docs, reports_to: docs-lead}
"""


@pytest.mark.integration
def test_orchestrate_runs_a_company_from_an_org_file(tmp_path: Path) -> None:
    server = ScriptedGateway({"keys": [KEY], "cost": 0.0001})
    server.start()
    try:
        company_script(server)
        (tmp_path / "org.yaml").write_text(ORG)
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("OPENAI_", "LITELLM_", "RUFLO_", "DATABASE_"))}
        env.update(OPENAI_BASE_URL=server.base_url, OPENAI_API_KEY=KEY,
                   RUFLO_DATA_DIR=str(tmp_path / "data"), RUFLO_LEASE_SECONDS="5",
                   XDG_CONFIG_HOME=str(tmp_path / "cfg"))
        ruflo = [sys.executable, "-c", "import sys; from ruflo.cli import main; sys.exit(main())"]
        run = subprocess.run([*ruflo, "orchestrate", "Ship the greeter", "--mode", "company",
                              "--org", str(tmp_path / "org.yaml"), "--workspace",
                              str(tmp_path / "ws"), "--json"], env=env, capture_output=True,
                             text=True, timeout=120, check=False)
        assert run.returncode == 0, run.stderr
        summary = json.loads(run.stdout.strip().splitlines()[-1])
        assert summary["status"] == "done"
        assert summary["objective_succeeded"] is True
        plan = PLAN_USAGE["prompt_tokens"] + PLAN_USAGE["completion_tokens"]
        assert summary["coordination_tokens"] == 3 * plan
        assert summary["tokens"] > summary["coordination_tokens"]
        # Git isolation: the result is on the hive's integration branch, not yet in the folder.
        assert not (tmp_path / "ws" / "faq.md").exists()
        assert subprocess.run(["git", "-C", str(tmp_path / "ws"), "show",
                               f"ruflo/{summary['hive_id']}:faq.md"], capture_output=True,
                              text=True, check=True).stdout == "faq"
        store = open_store(f"sqlite:///{tmp_path / 'data' / 'ruflo.db'}")
        try:
            [hive] = store.list_hives()
        finally:
            store.close()
        assert (hive.config["max_depth"], hive.config["max_hires"]) == (2, 1)
        assert hive.config["approvals"] == {"budget_override": "ask", "hire": "reject"}

        bad = tmp_path / "bad.yaml"
        bad.write_text("agents: [{name: a, reports_to: b}, {name: b, reports_to: a}]\n")
        refused = subprocess.run([*ruflo, "orchestrate", "x", "--mode", "company", "--org",
                                  str(bad)], env=env, capture_output=True, text=True,
                                 timeout=60, check=False)
        assert refused.returncode == 2
        assert "reporting cycle" in refused.stderr
        assert "Traceback" not in refused.stderr
        no_org = subprocess.run([*ruflo, "orchestrate", "x", "--mode", "company"], env=env,
                                capture_output=True, text=True, timeout=60, check=False)
        assert no_org.returncode == 2
        assert "--org" in no_org.stderr
    finally:
        server.stop()
