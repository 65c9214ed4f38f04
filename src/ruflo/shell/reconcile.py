"""Bring the shell's tools in line with the inventory.

Depends on the shell's inventory, managers, plan and report, and on notify's senders for alerts.
How a run goes:
1. Take the state folder's lock (one reconcile at a time) and open the log.
2. For each manager in order (mise, npm-global, pipx, cargo): list what is installed, plan,
   remove what `removed:` names and is still there, install what is missing (mise also
   activates globally, so the managers after it run on its node and python), then list again
   to check every install really took. Each command has a timeout; a failure is recorded and
   the run goes on with the next entry and the next manager.
3. Write the log, the one-line summary and last.json; alert when anything failed.
"""

from __future__ import annotations

import enum
import fcntl
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruflo.errors import ShellError
from ruflo.notify.base import Delivery, Notification
from ruflo.shell.alert import Alerter
from ruflo.shell.inventory import Inventory
from ruflo.shell.managers import (
    Installed,
    Match,
    PackageManager,
    default_managers,
    removal_present,
)
from ruflo.shell.package_command import CommandResult, Runner
from ruflo.shell.plan import Action, ManagerPlan, PlanItem, list_installed, plan_manager
from ruflo.shell.report import ReconcileLog, ShellState, iso_now


class Outcome(enum.StrEnum):
    INSTALLED = "installed"
    PRESENT = "already present"
    REMOVED = "removed"
    ABSENT = "already absent"
    INSTALL_FAILED = "install failed"
    REMOVE_FAILED = "remove failed"


@dataclass
class ItemResult:
    item: PlanItem
    outcome: Outcome
    detail: str = ""
    commands: list[CommandResult] = field(default_factory=list)

    @property
    def label(self) -> str:
        return self.item.spec.label


@dataclass
class ReconcileReport:
    started_at: str
    finished_at: str = ""
    results: list[ItemResult] = field(default_factory=list)
    listing_errors: dict[str, str] = field(default_factory=dict)
    log_path: Path | None = None
    summary: str = ""
    alerts: list[Delivery] = field(default_factory=list)

    def count(self, outcome: Outcome) -> int:
        return sum(1 for result in self.results if result.outcome is outcome)

    @property
    def failures(self) -> list[ItemResult]:
        return [r for r in self.results
                if r.outcome in (Outcome.INSTALL_FAILED, Outcome.REMOVE_FAILED)]

    @property
    def failed(self) -> bool:
        return bool(self.failures)

    def to_json(self) -> dict[str, Any]:
        return {
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "summary": self.summary,
            "log": str(self.log_path) if self.log_path else None,
            "counts": {outcome.value: self.count(outcome) for outcome in Outcome},
            "listing_errors": self.listing_errors,
            "results": [{
                "label": r.label, "manager": r.item.spec.manager, "entry": r.item.spec.raw,
                "planned": r.item.action.value, "reason": r.item.reason,
                "outcome": r.outcome.value, "detail": r.detail,
                "commands": [{"argv": list(c.argv), "returncode": c.returncode,
                              "status": c.status, "seconds": round(c.seconds, 3)}
                             for c in r.commands],
            } for r in self.results],
            "alerts": [{"sender": d.sender, "ok": d.ok, "description": d.description,
                        "status_code": d.status_code} for d in self.alerts],
        }


def summary_line(report: ReconcileReport, log_path: Path) -> str:
    """The login line: `✓ ruflo-shell: N installed, N already present, N removed @ <time>`, or
    `⚠ ruflo-shell: N install(s) failed on last reconcile (labels) — see <log>`."""
    failed_installs = [r.label for r in report.failures if r.outcome is Outcome.INSTALL_FAILED]
    failed_removals = [r.label for r in report.failures if r.outcome is Outcome.REMOVE_FAILED]
    if not report.failed:
        return (f"✓ ruflo-shell: {report.count(Outcome.INSTALLED)} installed, "
                f"{report.count(Outcome.PRESENT)} already present, "
                f"{report.count(Outcome.REMOVED)} removed @ {report.finished_at}")
    parts = []
    if failed_installs:
        parts.append(f"{len(failed_installs)} install(s)")
    if failed_removals:
        parts.append(f"{len(failed_removals)} removal(s)")
    labels = ", ".join(failed_installs + failed_removals)
    return (f"⚠ ruflo-shell: {' and '.join(parts)} failed on last reconcile ({labels}) "
            f"— see {log_path}")


@contextmanager
def reconcile_lock(state: ShellState) -> Iterator[None]:
    state.prepare()
    with state.lock_path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ShellError(f"another reconcile is running (lock {state.lock_path}); "
                             "nothing was changed; wait for it to finish") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def reconcile(inventory: Inventory, state: ShellState, *,
              managers: Sequence[PackageManager] | None = None, timeout: float = 600.0,
              env: dict[str, str] | None = None, alerter: Alerter | None = None) -> ReconcileReport:
    """Apply the inventory. Never raises for a package-manager failure: failures are in the
    report, the log, the summary line and the alert."""
    with reconcile_lock(state):
        log = ReconcileLog(state.log_path)
        report = ReconcileReport(started_at=iso_now(), log_path=state.log_path)
        try:
            log.line(f"=== ruflo-shell reconcile {report.started_at} inventory {inventory.path}")
            runner = Runner(timeout=timeout, env=env, on_result=log.command)
            for manager in managers or default_managers():
                if not any(inventory.entries(manager.name)):
                    continue
                log.line(f"--- {manager.name}")
                _reconcile_manager(manager, inventory, runner, report, log)
            report.finished_at = iso_now()
            report.summary = summary_line(report, state.log_path)
            log.line(report.summary)
            if report.failed and alerter is not None:
                report.alerts = _alert(alerter, report, log)
            log.line(f"=== done {report.finished_at}")
        finally:
            log.close()
        state.write_summary(report.summary)
        state.write_last(report.to_json())
        return report


def _reconcile_manager(manager: PackageManager, inventory: Inventory, runner: Runner,
                       report: ReconcileReport, log: ReconcileLog) -> None:
    installed, error = list_installed(manager, runner)
    if error:
        report.listing_errors[manager.name] = error
        log.line(f"{manager.name}: can't list what is installed: {error}")
    plan = plan_manager(manager, inventory, installed, error)
    results: list[ItemResult] = []
    for item in plan.items:
        log.line(f"{item.spec.label}: {item.action.value} ({item.reason})")
        if item.action is Action.PRESENT:
            results.append(ItemResult(item, Outcome.PRESENT, item.reason))
        elif item.action is Action.ABSENT:
            results.append(ItemResult(item, Outcome.ABSENT, item.reason))
    for item in plan.items:
        if item.action is Action.REMOVE:
            results.append(_remove(manager, item, runner))
    for item in plan.items:
        if item.action is Action.INSTALL:
            results.append(_install(item, runner))
    if plan.changes:
        _verify(manager, plan, results, runner)
    for result in results:
        if result.outcome not in (Outcome.PRESENT, Outcome.ABSENT):
            log.line(f"{result.label}: {result.outcome.value}"
                     f"{f' ({result.detail})' if result.detail else ''}")
    report.results.extend(results)


def _failure(result: CommandResult) -> str:
    last = result.tail(3).replace("\n", " / ")
    return f"{' '.join(result.argv)}: {result.status}" + (f": {last}" if last else "")


def _install(item: PlanItem, runner: Runner) -> ItemResult:
    done: list[CommandResult] = []
    for argv in item.commands:
        result = runner.run(list(argv))
        done.append(result)
        if not result.ok:
            return ItemResult(item, Outcome.INSTALL_FAILED, _failure(result), done)
    return ItemResult(item, Outcome.INSTALLED, "", done)


def _remove(manager: PackageManager, item: PlanItem, runner: Runner) -> ItemResult:
    done: list[CommandResult] = []
    for argv in item.commands:
        result = runner.run(list(argv))
        done.append(result)
        if not result.ok:
            if result.returncode is not None and manager.said_absent(result):
                return ItemResult(item, Outcome.ABSENT, f"{manager.name} says it is not installed",
                                  done)
            return ItemResult(item, Outcome.REMOVE_FAILED, _failure(result), done)
    return ItemResult(item, Outcome.REMOVED, "", done)


def _verify(manager: PackageManager, plan: ManagerPlan, results: list[ItemResult],
            runner: Runner) -> None:
    """An exit code 0 is not proof (pipx exits 0 when it decides the app "already seems to be
    installed"): list again and fail what the manager does not show as done."""
    installed: list[Installed] | None
    installed, error = list_installed(manager, runner)
    if installed is None:
        for result in results:
            if result.outcome in (Outcome.INSTALLED, Outcome.REMOVED):
                result.detail = f"not verified: {error}"
        return
    for result in results:
        spec = result.item.spec
        if result.outcome is Outcome.INSTALLED:
            match, reason = manager.match(spec, installed)
            if match is not Match.PRESENT:
                result.outcome = Outcome.INSTALL_FAILED
                result.detail = f"exit code 0, but {manager.name} then lists it as: {reason}"
        elif result.outcome is Outcome.REMOVED and removal_present(manager, spec, installed):
            result.outcome = Outcome.REMOVE_FAILED
            result.detail = f"exit code 0, but {manager.name} still lists it"


def _alert(alerter: Alerter, report: ReconcileReport, log: ReconcileLog) -> list[Delivery]:
    lines = [report.summary, ""]
    lines += [f"- {r.label}: {r.outcome.value}: {r.detail}" for r in report.failures]
    message = Notification(
        title="ruflo-shell: tool reconcile failed", text="\n".join(lines)[:3500],
        kind="reconcile_failed", condition=f"reconcile_failed:{report.summary}",
        data={"summary": report.summary, "log": str(report.log_path),
              "failures": [r.label for r in report.failures]})
    try:
        deliveries = alerter.alert(message)
    except Exception as error:  # the alert is a courtesy; the log and summary already tell
        log.line(f"alert: could not be sent: {type(error).__name__}: {error}")
        return []
    if not deliveries:
        log.line("alert: no sender is configured for reconcile_failed (set Telegram "
                 "credentials or RUFLO_WEBHOOK_URL)")
    for delivery in deliveries:
        status = f"HTTP {delivery.status_code}" if delivery.status_code else "no answer"
        log.line(f"alert {delivery.sender}: {'sent' if delivery.ok else 'FAILED'} "
                 f"({status}): {delivery.description}")
    return deliveries


def record_inventory_error(state: ShellState, error: ShellError,
                           alerter: Alerter | None = None) -> list[Delivery]:
    """An inventory that can't be used: nothing is changed, but the login line, the log and the
    alert say so."""
    with reconcile_lock(state):
        now = iso_now()
        line = f"⚠ ruflo-shell: inventory not applied @ {now}: {error} — see {state.log_path}"
        log = ReconcileLog(state.log_path)
        deliveries: list[Delivery] = []
        try:
            log.line(f"=== ruflo-shell reconcile {now}")
            log.line(f"inventory error: {error}")
            if alerter is not None:
                report = ReconcileReport(started_at=now, finished_at=now, summary=line,
                                         log_path=state.log_path)
                message = Notification(
                    title="ruflo-shell: inventory not applied", text=line,
                    kind="reconcile_failed", condition=f"reconcile_failed:{error}",
                    data={"summary": line, "log": str(state.log_path)})
                try:
                    deliveries = alerter.alert(message)
                except Exception as failure:
                    log.line(f"alert: could not be sent: {failure}")
                report.alerts = deliveries
                for delivery in deliveries:
                    log.line(f"alert {delivery.sender}: {'sent' if delivery.ok else 'FAILED'}: "
                             f"{delivery.description}")
        finally:
            log.close()
        state.write_summary(line)
        state.write_last({"started_at": now, "finished_at": now, "summary": line,
                          "log": str(state.log_path), "error": str(error), "results": []})
        return deliveries
