"""Reconcile through stand-ins for mise, npm and cargo that behave like the real tools: install
without activation, `npm ls NAME@tag` failing, `uninstall` of an absent crate exiting 101."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from standin_tools import calls

from ruflo.errors import ShellError
from ruflo.notify import TelegramSender
from ruflo.notify.testing import ProviderStandIn, Reply
from ruflo.shell import (
    Action,
    NotifyAlerter,
    Outcome,
    Runner,
    ShellState,
    make_plan,
    parse_inventory,
    reconcile,
)
from ruflo.shell.reconcile import reconcile_lock

INVENTORY = """\
mise: [node@20, rust@stable]
npm-global: ["claude-flow@alpha", "@openai/codex"]
cargo: [ripgrep, eza@0.18.2]
removed:
  cargo: [exa]
  npm-global: [left-pad]
"""


def load(text: str = INVENTORY) -> object:
    return parse_inventory(text, Path("/etc/ruflo-shell/inventory.yaml"))


def alerter(api: ProviderStandIn) -> NotifyAlerter:
    return NotifyAlerter({"telegram": TelegramSender("123:abc", "5", api_base=api.url)},
                         backoff=0.01, send_timeout=5)


def test_first_run_installs_second_changes_nothing(tmp_path: Path, standins: dict[str, str],
                                                   telegram_api: ProviderStandIn) -> None:
    state = ShellState(tmp_path / "state")
    first = reconcile(load(), state, env=standins, alerter=alerter(telegram_api))  # type: ignore[arg-type]
    assert [(r.label, r.outcome) for r in first.results if r.outcome is not Outcome.ABSENT] == [
        ("mise:node@20", Outcome.INSTALLED), ("mise:rust@stable", Outcome.INSTALLED),
        ("npm-global:claude-flow@alpha", Outcome.INSTALLED),
        ("npm-global:@openai/codex", Outcome.INSTALLED),
        ("cargo:ripgrep", Outcome.INSTALLED), ("cargo:eza@0.18.2", Outcome.INSTALLED)]
    assert first.summary.startswith("✓ ruflo-shell: 6 installed, 0 already present, 0 removed @ ")
    assert state.read_summary() == first.summary
    made = calls(standins)
    # mise installs then activates, so npm afterwards runs through mise's node
    assert made.index("mise install node@20") < made.index("mise use --global node@20")
    assert any(line.startswith("shim npm install --global claude-flow@alpha") for line in made)
    assert telegram_api.received == []

    before = len(calls(standins))
    second = reconcile(load(), state, env=standins, alerter=alerter(telegram_api))  # type: ignore[arg-type]
    assert {r.outcome for r in second.results} == {Outcome.PRESENT, Outcome.ABSENT}
    assert second.summary.startswith("✓ ruflo-shell: 0 installed, 6 already present, 0 removed @ ")
    new_calls = calls(standins)[before:]
    assert all(" ls " in f" {c} " or "--list" in c for c in new_calls), new_calls


def test_removed_entries_already_gone_are_already_absent_every_time(
        tmp_path: Path, standins: dict[str, str], telegram_api: ProviderStandIn) -> None:
    Path(standins["STANDIN_STATE"], "cargo.json").write_text(json.dumps({"exa": "0.10.1"}))
    inventory = load("cargo: [ripgrep]\nremoved:\n  cargo: [exa]\n  npm-global: [left-pad]\n"
                     "  mise: [node@18]\n")
    state = ShellState(tmp_path / "state")
    first = reconcile(inventory, state, env=standins, alerter=alerter(telegram_api))  # type: ignore[arg-type]
    outcomes = {r.label: r.outcome for r in first.results}
    assert outcomes["cargo:exa"] is Outcome.REMOVED
    assert outcomes["npm-global:left-pad"] is Outcome.ABSENT
    assert outcomes["mise:node@18"] is Outcome.ABSENT
    assert "1 removed" in first.summary
    for _ in range(2):
        again = reconcile(inventory, state, env=standins, alerter=alerter(telegram_api))  # type: ignore[arg-type]
        outcomes = {r.label: r.outcome for r in again.results}
        assert outcomes["cargo:exa"] is Outcome.ABSENT
        assert "0 removed" in again.summary
        assert not again.failed
    assert calls(standins).count("cargo uninstall exa") == 1
    assert not any("left-pad" in c for c in calls(standins))
    assert telegram_api.received == []  # nothing failed: never an alert


def test_an_absent_crate_said_absent_by_cargo_counts_as_absent(
        tmp_path: Path, standins: dict[str, str]) -> None:
    # cargo cannot be listed here (a broken .crates2.json), so uninstall is tried: exit 101
    # "did not match any packages" means already absent, not a failure.
    Path(standins["CARGO_HOME"]).mkdir()
    Path(standins["CARGO_HOME"], ".crates2.json").write_text("{broken")
    report = reconcile(load("removed:\n  cargo: [exa]\n"), ShellState(tmp_path / "s"),  # type: ignore[arg-type]
                       env=standins)
    [result] = report.results
    assert result.outcome is Outcome.ABSENT
    assert result.commands[0].returncode == 101
    assert not report.failed


def test_failures_never_stop_the_others_and_alert_with_the_log(
        tmp_path: Path, standins: dict[str, str], telegram_api: ProviderStandIn) -> None:
    inventory = load("mise: [broken@1, node@20]\nnpm-global: [broken-pkg, is-odd]\n"
                     "cargo: [broken-crate, liar, slow, ripgrep]\n")
    state = ShellState(tmp_path / "state")
    report = reconcile(inventory, state, env=standins, timeout=2,  # type: ignore[arg-type]
                       alerter=alerter(telegram_api))
    outcomes = {r.label: r.outcome for r in report.results}
    assert outcomes == {
        "mise:broken@1": Outcome.INSTALL_FAILED, "mise:node@20": Outcome.INSTALLED,
        "npm-global:broken-pkg": Outcome.INSTALL_FAILED, "npm-global:is-odd": Outcome.INSTALLED,
        "cargo:broken-crate": Outcome.INSTALL_FAILED, "cargo:liar": Outcome.INSTALL_FAILED,
        "cargo:slow": Outcome.INSTALL_FAILED, "cargo:ripgrep": Outcome.INSTALLED}
    details = {r.label: r.detail for r in report.results}
    assert "rc=101" in details["cargo:broken-crate"]
    assert "exit code 0, but cargo then lists it as: not installed" in details["cargo:liar"]
    assert "timed out after 2 s" in details["cargo:slow"]
    assert report.summary == (
        "⚠ ruflo-shell: 5 install(s) failed on last reconcile (mise:broken@1, "
        "npm-global:broken-pkg, cargo:broken-crate, cargo:liar, cargo:slow) — see "
        f"{state.log_path}")
    log = state.log_path.read_text()
    assert "$ cargo install broken-crate\n  -> rc=101" in log
    assert "could not find `broken-crate` in registry" in log
    assert "$ npm install --global broken-pkg\n  -> rc=1" in log
    assert "rc=0" not in log.split("$ cargo install broken-crate")[1].split("$")[0]
    assert "alert telegram: sent" in log
    [alert] = telegram_api.received
    text = alert.json()["text"]
    assert "cargo:broken-crate" in text
    assert str(state.log_path) in text


def test_telegram_error_description_lands_in_the_log(
        tmp_path: Path, standins: dict[str, str], telegram_api: ProviderStandIn) -> None:
    telegram_api.script(Reply(400, {"ok": False, "error_code": 400,
                                    "description": "Bad Request: chat not found"}))
    state = ShellState(tmp_path / "state")
    report = reconcile(load("cargo: [broken-crate]\n"), state, env=standins,  # type: ignore[arg-type]
                       alerter=alerter(telegram_api))
    assert report.failed
    assert [d.description for d in report.alerts] == ["Bad Request: chat not found"]
    assert ("alert telegram: FAILED (HTTP 400): Bad Request: chat not found"
            in state.log_path.read_text())
    assert state.read_summary() == report.summary


def test_installed_but_inactive_runtime_is_activated(tmp_path: Path,
                                                     standins: dict[str, str]) -> None:
    Path(standins["STANDIN_STATE"], "mise.json").write_text(json.dumps(
        {"installed": {"node": ["20.0.0"]}, "config": {}}))
    inventory = load("mise: [node@20]\n")
    [plan] = make_plan(inventory, Runner(env=standins))  # type: ignore[arg-type]
    [item] = plan.items
    assert item.action is Action.INSTALL
    assert "not active globally" in item.reason
    assert item.commands == (("mise", "use", "--global", "node@20"),)
    report = reconcile(inventory, ShellState(tmp_path / "s"), env=standins)  # type: ignore[arg-type]
    assert report.results[0].outcome is Outcome.INSTALLED
    assert "mise install node@20" not in calls(standins)


def test_plan_changes_nothing(tmp_path: Path, standins: dict[str, str]) -> None:
    plans = make_plan(load(), Runner(env=standins))  # type: ignore[arg-type]
    actions = {item.spec.label: item.action for p in plans for item in p.items}
    assert actions["cargo:ripgrep"] is Action.INSTALL
    assert actions["cargo:exa"] is Action.ABSENT
    assert actions["npm-global:left-pad"] is Action.ABSENT
    made = calls(standins)
    assert made
    assert all(" ls " in f" {c} " or "--list" in c for c in made)
    assert sorted(p.name for p in Path(standins["STANDIN_STATE"]).iterdir()) == ["calls.log"]


def test_one_reconcile_at_a_time(tmp_path: Path, standins: dict[str, str]) -> None:
    state = ShellState(tmp_path / "state")
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with reconcile_lock(state):
            holding.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert holding.wait(5)
        with pytest.raises(ShellError, match="another reconcile is running"):
            reconcile(load(), state, env=standins)  # type: ignore[arg-type]
    finally:
        release.set()
        thread.join()
    assert calls(standins) == []
