"""Rules routing, de-duplication and the rate limit, with a clock the test moves; and the
commands the messages tell a person to run exist."""

from __future__ import annotations

import re

import pytest

from ruflo.cli import run
from ruflo.config import load_settings
from ruflo.model import Event, utcnow
from ruflo.notify import notify_status, parse_rules
from ruflo.notify.messages import event_notification
from ruflo.notify.rules import DEFAULT_RULES, Deduper, RateLimiter, RulesError, route


def test_defaults_cover_what_a_person_must_hear() -> None:
    for kind in ("approval_requested", "budget_warning", "budget_exceeded", "hive_done",
                 "hive_failed", "hive_paused", "gateway_back", "reconcile_failed"):
        assert route(DEFAULT_RULES, kind, ["telegram", "webhook"]) == ["telegram", "webhook"]
    assert route(DEFAULT_RULES, "task_claimed", ["telegram"]) == []


@pytest.mark.parametrize(("kind", "data"), [
    ("approval_requested", {"approval_id": "APPROVAL", "kind": "hire", "subject": "a hire"}),
    ("budget_warning", {"scope": "hive", "max_tokens": 100, "spent_tokens": 81}),
    ("budget_exceeded", {"scope": "hive", "max_tokens": 100, "spent_tokens": 100}),
    ("hive_paused", {"reason": "gateway refused the key"}),
    ("hive_paused", {"reason": "an agent crashed"}),
    ("hive_paused", {"reason": "gateway unreachable"}),
    ("gateway_back", {"down_seconds": 42.5, "looks": 6}),
    ("hive_failed", {"reason": "not every task succeeded"}),
])
def test_the_commands_a_message_names_exist(kind: str, data: dict[str, object]) -> None:
    text = event_notification(Event(seq=1, hive_id="HIVE", kind=kind, ts=utcnow(),
                                    data=data)).text
    commands = re.findall(r"`ruflo ([^`]+)`", text)
    assert commands, text
    for command in commands:
        words = [w for w in command.split() if w.isidentifier() and w.islower()]
        assert run([*words, "--help"]) == 0, f"`ruflo {command}` in: {text}"


def test_override_silences_adds_and_narrows() -> None:
    rules = parse_rules('{"hive_done": [], "task_failed": ["webhook"], "budget_warning": "email"}')
    assert route(rules, "hive_done", ["telegram"]) == []
    assert route(rules, "task_failed", ["telegram", "webhook"]) == ["webhook"]
    assert route(rules, "budget_warning", ["telegram", "email"]) == ["email"]
    assert route(rules, "hive_paused", ["telegram"]) == ["telegram"]


@pytest.mark.parametrize("bad", ['{"hive_done": ["pager"]}', "[1]", "{not json",
                                 '{"hive_done": 3}'])
def test_bad_rules_are_refused_with_a_reason(bad: str) -> None:
    with pytest.raises(RulesError):
        parse_rules(bad)


def test_dedupe_window_and_forget() -> None:
    now = [0.0]
    dedupe = Deduper(600, lambda: now[0])
    assert dedupe.admit("telegram", "paused:h1")
    assert not dedupe.admit("telegram", "paused:h1")
    assert dedupe.admit("webhook", "paused:h1")
    assert dedupe.admit("telegram", "paused:h2")
    now[0] = 599.0
    assert not dedupe.admit("telegram", "paused:h1")
    now[0] = 601.0
    assert dedupe.admit("telegram", "paused:h1")
    dedupe.forget("telegram", "paused:h1")
    assert dedupe.admit("telegram", "paused:h1")


def test_rate_limit_is_a_sliding_minute_per_sender() -> None:
    now = [0.0]
    limit = RateLimiter(2, lambda: now[0])
    assert limit.admit("telegram")
    assert limit.admit("telegram")
    assert not limit.admit("telegram")
    assert limit.admit("webhook")
    now[0] = 59.9
    assert not limit.admit("telegram")
    now[0] = 60.0
    assert limit.admit("telegram")


def test_status_names_missing_credentials_once(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = load_settings({"RUFLO_DATA_DIR": str(tmp_path), "RUFLO_CONFIG": ""})
    lines = notify_status(settings)
    text = "\n".join(lines)
    assert "telegram: off, missing RUFLO_TELEGRAM_BOT_TOKEN" in text
    assert "email: off, missing RESEND_API_KEY and RUFLO_NOTIFY_EMAIL_FROM and RUFLO_NOTIFY_EMAIL_TO" in text
    assert "no sender is configured" in text


def test_status_reads_telegram_from_a_file_and_reports_unreadable_files(tmp_path) -> None:  # type: ignore[no-untyped-def]
    creds = tmp_path / "tg"
    creds.write_text("TOKEN=123:abc\nCHAT_ID=77\n")
    settings = load_settings({"RUFLO_DATA_DIR": str(tmp_path),
                              "RUFLO_TELEGRAM_CREDENTIALS_FILE": str(creds),
                              "RUFLO_WEBHOOK_URL": "http://127.0.0.1:9/hook"})
    lines = notify_status(settings)
    assert any(line.startswith("notify telegram: ready") and "'77'" in line for line in lines)
    assert not any("123:abc" in line for line in lines)
    assert any(line.startswith("notify webhook: ready") for line in lines)
    missing = load_settings({"RUFLO_DATA_DIR": str(tmp_path),
                             "RUFLO_TELEGRAM_CREDENTIALS_FILE": str(tmp_path / "nope")})
    assert any("can't be read" in line for line in notify_status(missing))
