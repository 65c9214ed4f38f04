"""`ruflo notify test`: the provider's answer printed, the exit code telling success."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ruflo.commands.notify import app
from ruflo.errors import ConfigError
from ruflo.notify.testing import ProviderStandIn, Reply


def env(tmp_path: Path, **values: str) -> dict[str, str | None]:
    """Settings from `values` only: every other notify variable unset."""
    unset: dict[str, str | None] = {name: None for name in (
        "RUFLO_CONFIG", "RUFLO_TELEGRAM_BOT_TOKEN", "RUFLO_TELEGRAM_CHAT_ID",
        "FRANK_C2_TELEGRAM_BOT_TOKEN", "FRANK_C2_TELEGRAM_CHAT_ID",
        "RUFLO_TELEGRAM_CREDENTIALS_FILE", "RESEND_API_KEY", "RUFLO_NOTIFY_EMAIL_FROM",
        "RUFLO_NOTIFY_EMAIL_TO", "RUFLO_WEBHOOK_URL", "RUFLO_WEBHOOK_SECRET",
        "RUFLO_NOTIFY_RULES")}
    return {**unset, "RUFLO_DATA_DIR": str(tmp_path), **values}


def test_sends_and_prints_the_answer(tmp_path: Path, telegram: ProviderStandIn) -> None:
    result = CliRunner().invoke(app, ["test", "--sender", "telegram"], env=env(
        tmp_path, RUFLO_TELEGRAM_BOT_TOKEN="123:abc", RUFLO_TELEGRAM_CHAT_ID="99",
        RUFLO_TELEGRAM_API_BASE=telegram.url))
    assert result.exit_code == 0, result.output
    assert "telegram: sent (HTTP 200): sent (message_id 1)" in result.output
    assert '"ok": true' in result.output
    assert telegram.received[0].json()["chat_id"] == "99"


def test_provider_refusal_exits_1_with_its_description(tmp_path: Path,
                                                       webhook: ProviderStandIn) -> None:
    webhook.script(Reply(401, {"error": "bad signature"}))
    result = CliRunner().invoke(app, ["test", "--json"], env=env(
        tmp_path, RUFLO_WEBHOOK_URL=webhook.url, RUFLO_WEBHOOK_SECRET="k"))
    assert result.exit_code == 1
    [answer] = json.loads(result.output)
    assert answer == {"sender": "webhook", "ok": False, "status_code": 401,
                      "description": "bad signature", "answer": {"error": "bad signature"}}


def test_nothing_configured_names_the_missing_credentials(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["test"], env=env(tmp_path))
    assert result.exit_code != 0
    assert isinstance(result.exception, ConfigError)
    assert "RUFLO_TELEGRAM_BOT_TOKEN" in str(result.exception)
    assert "RESEND_API_KEY" in str(result.exception)
    with pytest.raises(ConfigError, match="email is not configured: missing RESEND_API_KEY"):
        CliRunner().invoke(app, ["test", "--sender", "email"], env=env(tmp_path),
                           catch_exceptions=False)
