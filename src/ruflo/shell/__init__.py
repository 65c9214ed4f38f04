"""ruflo-shell: reconcile the shell container's declared tool inventory (mise runtimes, global
npm packages, pipx apps, cargo crates). A side layer: depends on the core and notify's senders.
"""

from ruflo.shell.alert import Alerter, NotifyAlerter
from ruflo.shell.inventory import MANAGERS, Inventory, PackageSpec, load_inventory, parse_inventory
from ruflo.shell.managers import (
    Cargo,
    Installed,
    ListingFailed,
    Match,
    Mise,
    NpmGlobal,
    PackageManager,
    Pipx,
    default_managers,
)
from ruflo.shell.package_command import CommandResult, Runner
from ruflo.shell.plan import Action, ManagerPlan, PlanItem, make_plan, plan_manager
from ruflo.shell.reconcile import (
    ItemResult,
    Outcome,
    ReconcileReport,
    reconcile,
    record_inventory_error,
    summary_line,
)
from ruflo.shell.report import ShellState

__all__ = [
    "MANAGERS",
    "Action",
    "Alerter",
    "Cargo",
    "CommandResult",
    "Installed",
    "Inventory",
    "ItemResult",
    "ListingFailed",
    "ManagerPlan",
    "Match",
    "Mise",
    "NotifyAlerter",
    "NpmGlobal",
    "Outcome",
    "PackageManager",
    "PackageSpec",
    "Pipx",
    "PlanItem",
    "ReconcileReport",
    "Runner",
    "ShellState",
    "default_managers",
    "load_inventory",
    "make_plan",
    "parse_inventory",
    "plan_manager",
    "reconcile",
    "record_inventory_error",
    "summary_line",
]
