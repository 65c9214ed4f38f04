"""`ruflo shell plan|reconcile|status` as a person or a boot script runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from standin_tools import calls
from typer.testing import CliRunner

from ruflo.commands.shell import app
from ruflo.errors import ShellError
from ruflo.notify.testing import ProviderStandIn, Reply


def cli_env(tmp_path: Path, standins: dict[str, str], inventory: str,
            **extra: str) -> dict[str, str | None]:
    path = tmp_path / "inventory.yaml"
    path.write_text(inventory)
    unset: dict[str, str | None] = {name: None for name in (
        "RUFLO_CONFIG", "RUFLO_TELEGRAM_BOT_TOKEN", "RUFLO_TELEGRAM_CHAT_ID",
        "FRANK_C2_TELEGRAM_BOT_TOKEN", "FRANK_C2_TELEGRAM_CHAT_ID",
        "RUFLO_TELEGRAM_CREDENTIALS_FILE", "RUFLO_WEBHOOK_URL", "RESEND_API_KEY")}
    return {**unset, **standins, "RUFLO_DATA_DIR": str(tmp_path / "data"),
            "RUFLO_SHELL_INVENTORY": str(path), **extra}


def test_plan_reconcile_status(tmp_path: Path, standins: dict[str, str]) -> None:
    env = cli_env(tmp_path, standins, "cargo: [ripgrep]\nremoved:\n  cargo: [exa]\n")
    runner = CliRunner()
    planned = runner.invoke(app, ["plan", "--json"], env=env)
    assert planned.exit_code == 0, planned.output
    items = json.loads(planned.output)["managers"][0]["items"]
    assert [(i["label"], i["action"]) for i in items] == [("cargo:exa", "already absent"),
                                                          ("cargo:ripgrep", "install")]
    assert runner.invoke(app, ["plan", "--strict"], env=env).exit_code == 1

    status = runner.invoke(app, ["status"], env=env)
    assert "no reconcile has run yet" in status.output

    done = runner.invoke(app, ["reconcile"], env=env)
    assert done.exit_code == 0, done.output
    assert "✓ ruflo-shell: 1 installed, 0 already present, 0 removed @ " in done.output
    assert "already absent   cargo:exa" in done.output

    status = runner.invoke(app, ["status", "--strict"], env=env)
    assert status.exit_code == 0
    assert status.output.startswith("✓ ruflo-shell: 1 installed")
    assert f"log: {tmp_path / 'data' / 'shell' / 'reconcile.log'}" in status.output
    assert runner.invoke(app, ["plan", "--strict"], env=env).exit_code == 0


def test_failed_reconcile_exits_0_unless_strict_and_alerts(
        tmp_path: Path, standins: dict[str, str], telegram_api: ProviderStandIn) -> None:
    env = cli_env(tmp_path, standins, "cargo: [broken-crate]\n",
                  RUFLO_TELEGRAM_BOT_TOKEN="123:abc", RUFLO_TELEGRAM_CHAT_ID="5",
                  RUFLO_TELEGRAM_API_BASE=telegram_api.url)
    telegram_api.script(Reply(403, {"ok": False, "error_code": 403,
                                    "description": "Forbidden: bot was kicked"}))
    runner = CliRunner()
    soft = runner.invoke(app, ["reconcile", "--json"], env=env)
    assert soft.exit_code == 0, soft.output
    report = json.loads(soft.output)
    assert report["summary"].startswith("⚠ ruflo-shell: 1 install(s) failed on last reconcile "
                                        "(cargo:broken-crate) — see ")
    assert report["alerts"][0]["description"] == "Forbidden: bot was kicked"
    assert runner.invoke(app, ["reconcile", "--strict"], env=env).exit_code == 1
    assert runner.invoke(app, ["status", "--strict"], env=env).exit_code == 1
    assert len(telegram_api.received) == 2


def test_invalid_inventory_changes_nothing_but_is_reported(
        tmp_path: Path, standins: dict[str, str]) -> None:
    env = cli_env(tmp_path, standins, "cargo: [ripgrep]\nbrew: [wget]\n")
    runner = CliRunner()
    soft = runner.invoke(app, ["reconcile"], env=env)
    assert soft.exit_code == 0
    assert "line 2: unknown section 'brew'" in soft.output
    status = runner.invoke(app, ["status"], env=env)
    assert status.output.startswith("⚠ ruflo-shell: inventory not applied")
    with pytest.raises(ShellError, match="line 2"):
        runner.invoke(app, ["reconcile", "--strict"], env=env, catch_exceptions=False)
    with pytest.raises(ShellError, match="line 2"):
        runner.invoke(app, ["plan"], env=env, catch_exceptions=False)
    assert calls(standins) == []
