"""Compare the inventory with what each manager lists and decide, per entry: install, already
present, remove, already absent. Deciding changes nothing. Depends on shell.inventory and
shell.managers.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field

from ruflo.shell.inventory import Inventory, PackageSpec
from ruflo.shell.managers import (
    Installed,
    ListingFailed,
    Match,
    PackageManager,
    default_managers,
    removal_present,
)
from ruflo.shell.package_command import Runner


class Action(enum.StrEnum):
    INSTALL = "install"
    PRESENT = "already present"
    REMOVE = "remove"
    ABSENT = "already absent"


@dataclass(frozen=True, slots=True)
class PlanItem:
    spec: PackageSpec
    action: Action
    reason: str
    """Why, in a few words ("not installed", "installed 20.20.2", "can't check: ...")."""
    commands: tuple[tuple[str, ...], ...] = ()
    """What reconcile would run for it."""
    match: Match | None = None


@dataclass
class ManagerPlan:
    manager: str
    items: list[PlanItem] = field(default_factory=list)
    listing_error: str | None = None
    """Why the manager could not say what is installed; entries were then planned unchecked."""

    @property
    def changes(self) -> list[PlanItem]:
        return [item for item in self.items if item.action in (Action.INSTALL, Action.REMOVE)]


def plan_manager(manager: PackageManager, inventory: Inventory,
                 installed: Sequence[Installed] | None,
                 listing_error: str | None = None) -> ManagerPlan:
    """The plan for one manager. With `installed` None (listing failed) every wanted entry is to
    install and every removed entry to remove, and the reason says nothing could be checked."""
    wanted, removed = inventory.entries(manager.name)
    plan = ManagerPlan(manager.name, listing_error=listing_error)
    unchecked = f"can't check: {listing_error}" if listing_error else "can't check"
    for spec in removed:
        if installed is not None and not removal_present(manager, spec, installed):
            plan.items.append(PlanItem(spec, Action.ABSENT, "not installed"))
            continue
        reason = "installed" if installed is not None else unchecked
        plan.items.append(PlanItem(spec, Action.REMOVE, reason,
                                   tuple(map(tuple, manager.remove_commands(spec)))))
    for spec in wanted:
        if installed is None:
            match, reason = Match.MISSING, unchecked
        else:
            match, reason = manager.match(spec, installed)
        if match is Match.PRESENT:
            plan.items.append(PlanItem(spec, Action.PRESENT, reason, match=match))
        else:
            plan.items.append(PlanItem(spec, Action.INSTALL, reason,
                                       tuple(map(tuple, manager.install_commands(spec, match))),
                                       match))
    return plan


def list_installed(manager: PackageManager,
                   runner: Runner) -> tuple[list[Installed] | None, str | None]:
    try:
        return manager.list_installed(runner), None
    except ListingFailed as error:
        return None, str(error)


def make_plan(inventory: Inventory, runner: Runner,
              managers: Sequence[PackageManager] | None = None) -> list[ManagerPlan]:
    """Plans for every manager the inventory mentions, each listed now. Later managers may look
    different once mise has activated their runtime; `reconcile` re-plans each in turn."""
    plans = []
    for manager in managers or default_managers():
        if not any(inventory.entries(manager.name)):
            continue
        installed, error = list_installed(manager, runner)
        plans.append(plan_manager(manager, inventory, installed, error))
    return plans
