"""`ruflo shell plan|reconcile|status`: the shell container's tool inventory.

Imports only typer and the standard library at module level (the CLI must start fast).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from ruflo.config import Settings
    from ruflo.shell import ManagerPlan, ReconcileReport

app = typer.Typer(help="Reconcile the shell's declared tool inventory.", no_args_is_help=True,
                  add_completion=False)

InventoryOption = Annotated[Path | None, typer.Option(
    "--inventory", help="inventory.yaml to read (default: RUFLO_SHELL_INVENTORY, "
                        "/etc/ruflo-shell/inventory.yaml).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
StrictOption = Annotated[bool, typer.Option(
    "--strict", help="Exit 1 when something failed (reconcile), is pending or unchecked (plan), "
                     "or the last reconcile failed (status).")]
TimeoutOption = Annotated[float, typer.Option(
    "--step-timeout", min=1.0, help="Seconds one package-manager command may take.")]


def _settings() -> Settings:
    from ruflo.config import load_settings

    return load_settings()


def _inventory_path(settings: Settings, inventory: Path | None) -> Path:
    return inventory if inventory is not None else settings.shell_inventory


@app.command()
def plan(inventory: InventoryOption = None, as_json: JsonOption = False,
         strict: StrictOption = False, step_timeout: TimeoutOption = 120.0) -> None:
    """Print what `reconcile` would do. Changes nothing."""
    from ruflo.shell import Action, Runner, load_inventory, make_plan

    settings = _settings()
    path = _inventory_path(settings, inventory)
    plans = make_plan(load_inventory(path), Runner(timeout=step_timeout))
    items = [item for p in plans for item in p.items]
    counts = {action.value: sum(1 for i in items if i.action is action) for action in Action}
    if as_json:
        typer.echo(json.dumps({"inventory": str(path), "counts": counts,
                               "managers": [_plan_json(p) for p in plans]}, indent=2))
    else:
        typer.echo(f"inventory {path}")
        for manager_plan in plans:
            _print_plan(manager_plan)
        typer.echo(f"plan: {counts['install']} to install, {counts['already present']} already "
                   f"present, {counts['remove']} to remove, {counts['already absent']} already "
                   "absent (nothing was changed)")
    pending = counts["install"] + counts["remove"]
    if strict and (pending or any(p.listing_error for p in plans)):
        raise SystemExit(1)


def _plan_json(manager_plan: ManagerPlan) -> dict[str, Any]:
    return {"manager": manager_plan.manager, "listing_error": manager_plan.listing_error,
            "items": [{"label": i.spec.label, "entry": i.spec.raw, "line": i.spec.line,
                       "action": i.action.value, "reason": i.reason,
                       "commands": [list(c) for c in i.commands]} for i in manager_plan.items]}


def _print_plan(manager_plan: ManagerPlan) -> None:
    error = f"  (can't list: {manager_plan.listing_error})" if manager_plan.listing_error else ""
    typer.echo(f"{manager_plan.manager}{error}")
    for item in manager_plan.items:
        commands = " && ".join(" ".join(c) for c in item.commands)
        typer.echo(f"  {item.action.value:<16} {item.spec.raw:<28} {item.reason}"
                   + (f"\n  {'':<16} $ {commands}" if commands else ""))


@app.command()
def reconcile(inventory: InventoryOption = None, as_json: JsonOption = False,
              strict: StrictOption = False, step_timeout: TimeoutOption = 600.0) -> None:
    """Install what is missing, remove what `removed:` names, write the login summary and log,
    alert on failure. Exits 0 even on failure (boot must go on) unless --strict."""
    from ruflo.errors import ShellError
    from ruflo.shell import NotifyAlerter, ShellState, load_inventory, record_inventory_error
    from ruflo.shell import reconcile as run_reconcile

    settings = _settings()
    path = _inventory_path(settings, inventory)
    state = ShellState(settings.shell_state_path)
    alerter = NotifyAlerter.from_settings(settings)
    try:
        loaded = load_inventory(path)
    except ShellError as error:
        record_inventory_error(state, error, alerter)
        if strict:
            raise
        typer.echo(f"error: {error}", err=True)
        return
    try:
        report = run_reconcile(loaded, state, timeout=step_timeout, alerter=alerter)
    except ShellError as error:
        if strict:
            raise
        typer.echo(f"error: {error}", err=True)
        return
    if as_json:
        typer.echo(json.dumps(report.to_json(), indent=2, ensure_ascii=False))
    else:
        _print_report(report)
    if strict and report.failed:
        raise SystemExit(1)


def _print_report(report: ReconcileReport) -> None:
    for manager, error in report.listing_errors.items():
        typer.echo(f"{manager}: can't list what is installed: {error}")
    for result in report.results:
        detail = f"  ({result.detail})" if result.detail else ""
        typer.echo(f"  {result.outcome.value:<16} {result.label}{detail}")
    for delivery in report.alerts:
        typer.echo(f"alert {delivery.sender}: {'sent' if delivery.ok else 'failed'}: "
                   f"{delivery.description}")
    typer.echo(report.summary)
    typer.echo(f"log: {report.log_path}")


@app.command()
def status(as_json: JsonOption = False, strict: StrictOption = False,
           inventory: InventoryOption = None) -> None:
    """Print the last reconcile's summary line and where its log is."""
    from ruflo.shell import ShellState

    settings = _settings()
    state = ShellState(settings.shell_state_path)
    summary = state.read_summary()
    last = state.read_last()
    if as_json:
        typer.echo(json.dumps({"summary": summary, "log": str(state.log_path),
                               "inventory": str(_inventory_path(settings, inventory)),
                               "last": last}, indent=2, ensure_ascii=False))
    elif summary is None:
        typer.echo(f"no reconcile has run yet (state folder {state.directory}); "
                   "run `ruflo shell reconcile`")
    else:
        typer.echo(summary)
        typer.echo(f"log: {state.log_path}")
    if strict and (summary is None or summary.startswith("⚠")):
        raise SystemExit(1)
