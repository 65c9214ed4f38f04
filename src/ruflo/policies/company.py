"""Company mode: an org chart (validated tree) and every company rule, as pure functions of the
board and org chart (reference/paperclip.md): who holds a ticket whose owner is gone, the acting
root, load per part of the org, whether a ticket is delegated and to whom, escalation, when a hire
or a person's decision is needed. Pure: no I/O.

The simulator and the live company engine ask `CompanyPolicy` for the same decisions; only the
planner that resolves a delegation differs (simulated: a timed stand-in; live: one LLM call).
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from ruflo.errors import PolicyError
from ruflo.model import Mode
from ruflo.policies.base import (
    AgentLike,
    AssignedWork,
    AwaitApproval,
    BasePolicy,
    Decision,
    Delegate,
    Escalate,
    Idle,
    RandomLike,
    Take,
)
from ruflo.policies.board import BoardTask, TaskLike

_WORD = re.compile(r"[a-z0-9][a-z0-9+#.-]*")


def _words(text: str) -> frozenset[str]:
    return frozenset(_WORD.findall(text.lower()))


class OrgChart:
    """Who reports to whom: exactly one root, every manager known, no cycles.

    Built from agents whose `reports_to` holds the manager's id (or name: both are accepted,
    ids win). Raises PolicyError naming the offending agents."""

    def __init__(self, agents: Sequence[AgentLike]) -> None:
        if not agents:
            raise PolicyError("org chart is empty: a company needs at least one agent")
        by_id: dict[str, AgentLike] = {}
        for agent in agents:
            if agent.id in by_id:
                raise PolicyError(f"org chart: two agents have the id {agent.id!r}")
            by_id[agent.id] = agent
        by_name = {a.name: a.id for a in agents}
        manager: dict[str, str | None] = {}
        for agent in agents:
            boss = agent.reports_to
            if boss is None or boss == "":
                manager[agent.id] = None
                continue
            boss_id = boss if boss in by_id else by_name.get(boss)
            if boss_id is None:
                raise PolicyError(
                    f"org chart: agent {agent.name!r} reports to {boss!r}, who is not in the org"
                )
            if boss_id == agent.id:
                raise PolicyError(f"org chart: agent {agent.name!r} reports to itself")
            manager[agent.id] = boss_id
        roots = [a for a, m in manager.items() if m is None]
        cycle = _find_manager_cycle(manager)
        if cycle is not None:
            names = " → ".join(by_id[a].name for a in cycle)
            raise PolicyError(f"org chart has a reporting cycle: {names}")
        if len(roots) != 1:
            names = ", ".join(repr(by_id[a].name) for a in roots)
            raise PolicyError(
                f"org chart has {len(roots)} roots ({names}): exactly one agent must have no "
                "reports_to; make the others report to it"
            )
        self.root = roots[0]
        self.agents = by_id
        self.manager = manager
        self.reports: dict[str, list[str]] = {a.id: [] for a in agents}
        for agent in agents:
            boss_id = manager[agent.id]
            if boss_id is not None:
                self.reports[boss_id].append(agent.id)
        self.depth: dict[str, int] = {}
        self.subtree_skills: dict[str, frozenset[str]] = {}
        self.subtree_words: dict[str, frozenset[str]] = {}
        order = self._preorder()
        for agent_id in order:
            boss_id = manager[agent_id]
            self.depth[agent_id] = 0 if boss_id is None else self.depth[boss_id] + 1
        for agent_id in reversed(order):
            agent = by_id[agent_id]
            skills = set(agent.skills)
            words = set(_words(agent.capabilities))
            for report in self.reports[agent_id]:
                skills |= self.subtree_skills[report]
                words |= self.subtree_words[report]
            self.subtree_skills[agent_id] = frozenset(skills)
            self.subtree_words[agent_id] = frozenset(words)

    def _preorder(self) -> list[str]:
        order: list[str] = []
        stack = [self.root]
        while stack:
            agent_id = stack.pop()
            order.append(agent_id)
            stack.extend(reversed(self.reports[agent_id]))
        return order

    def chain(self, agent_id: str) -> list[str]:
        """The agent and its managers up to the root."""
        chain = [agent_id]
        boss = self.manager[agent_id]
        while boss is not None:
            chain.append(boss)
            boss = self.manager[boss]
        return chain

    def live_reports(self, agent_id: str, alive: Callable[[str], bool]) -> list[str]:
        """Direct reports that are alive; a lost report's own reports are adopted in its place."""
        found: list[str] = []
        stack = list(reversed(self.reports[agent_id]))
        while stack:
            report = stack.pop()
            if alive(report):
                found.append(report)
            else:
                stack.extend(reversed(self.reports[report]))
        return found

    @classmethod
    def generated(cls, agents: Sequence[AgentLike], span: int = 8) -> list[tuple[str, str | None]]:
        """A default org for agents without `reports_to`: the first is the root, the next
        ⌈(n−1)/(span+1)⌉ are managers under it, the rest engineers dealt to the managers.
        Returns (agent id, manager id) pairs."""
        ids = [a.id for a in agents]
        if not ids:
            return []
        rest = ids[1:]
        if len(rest) <= span:
            return [(ids[0], None), *((a, ids[0]) for a in rest)]
        n_managers = -(-len(rest) // (span + 1))
        managers, engineers = rest[:n_managers], rest[n_managers:]
        pairs: list[tuple[str, str | None]] = [(ids[0], None)]
        pairs += [(m, ids[0]) for m in managers]
        pairs += [(e, managers[i % n_managers]) for i, e in enumerate(engineers)]
        return pairs


def _find_manager_cycle(manager: Mapping[str, str | None]) -> list[str] | None:
    state: dict[str, int] = {}
    for start in manager:
        path: list[str] = []
        node: str | None = start
        while node is not None and state.get(node, 0) == 0:
            state[node] = 1
            path.append(node)
            node = manager[node]
        if node is not None and state.get(node) == 1:
            return [*path[path.index(node):], node]
        for visited in path:
            state[visited] = 2
    return None


def delegation_score(org: OrgChart, report: str, skills: Sequence[str]) -> float:
    """How well a report's part of the org matches a task: a point per task skill someone in it
    declares, half a point per task skill named in their capabilities text."""
    have = org.subtree_skills[report]
    words = org.subtree_words[report]
    score = 0.0
    for skill in skills:
        if skill in have:
            score += 1.0
        elif skill.lower() in words:
            score += 0.5
    return score


def choose_delegate(
    org: OrgChart,
    manager_id: str,
    skills: Sequence[str],
    load: Mapping[str, float],
    alive: Callable[[str], bool] = lambda _agent: True,
    exclude: str | None = None,
) -> str | None:
    """The report a manager hands a task to: best capability/skill match, then least loaded,
    then org-chart order. None when the manager has no live report."""
    best: tuple[float, float, int] | None = None
    chosen: str | None = None
    for order, report in enumerate(org.live_reports(manager_id, alive)):
        if report == exclude:
            continue
        key = (-delegation_score(org, report, skills), load.get(report, 0), order)
        if best is None or key < best:
            best, chosen = key, report
    return chosen


Alive = Callable[[str], bool]
"""Whether an agent works now (alive and not paused)."""


def acting_root(org: OrgChart, alive: Alive) -> str | None:
    """Who acts as root: the root while it works, else the highest working agent (then by id);
    None when no one works."""
    if alive(org.root):
        return org.root
    working = [a for a in org.agents if alive(a)]
    return min(working, key=lambda a: (org.depth[a], a)) if working else None


def nearest_live_manager(org: OrgChart, agent_id: str, alive: Alive) -> str | None:
    """Who takes over from `agent_id` (lost, paused, or passing a ticket up): its nearest working
    manager, else the acting root; None when no one else works."""
    for member in org.chain(agent_id)[1:]:
        if alive(member):
            return member
    root = acting_root(org, alive)
    return root if root != agent_id else None


def working_owner(org: OrgChart, agent_id: str, alive: Alive) -> str:
    """Who holds a ticket owned by `agent_id`: the owner while it works, else its nearest
    working manager, else the acting root (the root itself when no one works)."""
    if alive(agent_id):
        return agent_id
    return nearest_live_manager(org, agent_id, alive) or org.root


def part_load(org: OrgChart, owned: Iterable[tuple[str, float]]) -> dict[str, float]:
    """Unfinished effort in each agent's part of the org (what least-loaded compares), from
    (owner, effort) of every unfinished ticket: a ticket counts for its owner and each manager
    above it."""
    load = dict.fromkeys(org.agents, 0.0)
    for owner, effort in owned:
        for member in org.chain(owner):
            load[member] += effort
    return load


@dataclass(frozen=True, slots=True)
class TicketView:
    """What the company rules need to know about one ticket (the live engine reads it from the
    store and event log, the simulator from its board)."""

    id: str
    skills: tuple[str, ...] = ()
    depth: int = 0
    """Splits above it (a hand-over to a report keeps the depth)."""
    split: bool = False
    """It has child tickets already (its owner integrates them, it does not split again)."""
    escalated: bool = False
    """A report passed it up and its owner (a manager) has not decided what happens yet."""
    escalated_by: str | None = None
    """Who passed it up last (not offered it again while another report can take it)."""
    escalations: int = 0
    approval: str | None = None
    """The approval it waits on (a hire, or a root's escalation to people)."""
    hire_rejected: bool = False
    """People rejected a hire for it: its manager decides without one."""


@dataclass(frozen=True, slots=True)
class CompanyParams:
    max_depth: int = 3
    """Splits below the objective after which a ticket is no longer handed on: whoever holds it
    does it (a hand-over to a report keeps a ticket's depth)."""
    batch: int = 20
    """Tickets a manager hands out in one delegation decision (one planning call)."""
    max_attempts: int = 5
    max_hires: int = 2
    """Agents its managers may ask to add in one hive (each one a `hire` approval)."""

    def __post_init__(self) -> None:
        if self.max_depth < 0 or self.batch < 1 or self.max_hires < 0:
            raise PolicyError("company: max_depth must be >= 0, batch >= 1 and max_hires >= 0")


class CompanyPolicy(BasePolicy):
    """An org chart delegating tickets down by capability.

    The company rules (pure: their arguments, the org chart and the params), asked by the
    simulator's run loop below and by the live company engine alike:
    - `decide_ticket`: a ticket waiting on a person → AwaitApproval; a ticket its holder may
      still delegate (it has working reports; the ticket was escalated to it, or is under the
      depth bound and not split yet) → Delegate with the proposed report (`choose_delegate`);
      otherwise → Take (the holder does it).
    - `escalation`: a blocked ticket goes to the nearest working manager (`Escalate.to`), to
      people when there is none, and is given up after `max_attempts` escalations.
    - `may_hire`, and the module's `working_owner`, `nearest_live_manager`, `acting_root` and
      `part_load`.

    Simulator run loop (one woken agent's decision, `choose`):
    1. Tickets in its inbox (from its manager, or the objective for the root): `decide_ticket`
       for up to `batch` of them; the delegated ones form one Delegate, which the engine charges
       as coordination (tokens and the manager's time); the others go to its own work pile.
    2. Otherwise take its own highest-priority ready ticket → Take.
    3. Otherwise sleep: it is woken only by an assignment or a dependency of its pile finishing.

    A failed attempt escalates (`escalation`) to the assignee's nearest live manager, which
    decides again, handing it to another report when it can. A lost agent's inbox, pile and
    claim go to its nearest live manager; if the root is lost, the highest live agent acts as
    root."""

    mode = Mode.COMPANY

    def __init__(self, org: OrgChart, params: CompanyParams | None = None) -> None:
        self.params = params or CompanyParams()
        super().__init__(max_attempts=self.params.max_attempts)
        self.org = org
        self.work = AssignedWork()
        self.inbox: dict[str, list[tuple[int, int, BoardTask]]] = {a: [] for a in org.agents}
        self.in_flight: dict[str, list[BoardTask]] = {}
        """Tickets a manager is delegating right now (lost with it if it dies mid-way)."""
        self.load: dict[str, float] = dict.fromkeys(org.agents, 0.0)
        """`part_load` kept up to date as tickets move (the simulator's boards are large)."""
        self._charged: dict[str, tuple[str, float]] = {}
        """Task id → agent whose load (and its managers') the task counts in."""
        self.acting_root = org.root
        self.decisions = 0
        self.delegations = 0
        self.escalations = 0
        self.failed_by: dict[str, str] = {}
        self.escalated: set[str] = set()
        """Tickets passed up that their holder has not handed on yet."""

    # -- the rules -------------------------------------------------------------------------
    def delegable(self, agent_id: str, ticket: TicketView, alive: Alive) -> bool:
        """Whether `agent_id` hands the ticket on rather than doing it: it has working reports,
        and the ticket was escalated to it (a manager decides about a blocked ticket at any
        depth) or is under the depth bound and not split already."""
        if not self.org.live_reports(agent_id, alive):
            return False
        if ticket.escalated:
            return True
        return ticket.depth < self.params.max_depth and not ticket.split

    def may_hire(self, ticket: TicketView, hires_used: int) -> bool:
        """Hiring is open while the hive has hires left (pending and approved ones count) and
        people have not rejected a hire for this ticket."""
        return not ticket.hire_rejected and hires_used < self.params.max_hires

    def decide_ticket(self, agent_id: str, ticket: TicketView, alive: Alive,
                      load: Mapping[str, float], hires_used: int | None = None,
                      ) -> Take | Delegate | AwaitApproval:
        """What the holder of one ticket does with it (see the class docstring). `hires_used`
        None: hiring is not offered (the simulator does not hire)."""
        if ticket.approval is not None:
            return AwaitApproval(ticket.id, ticket.approval)
        if self.delegable(agent_id, ticket, alive):
            target = choose_delegate(self.org, agent_id, ticket.skills, load, alive,
                                     exclude=ticket.escalated_by) \
                or choose_delegate(self.org, agent_id, ticket.skills, load, alive)
            if target is not None:
                return Delegate(((ticket.id, target),),
                                may_hire=hires_used is not None
                                and self.may_hire(ticket, hires_used))
        return Take(ticket.id)

    def escalation(self, agent_id: str, ticket: TicketView, alive: Alive) -> Escalate:
        """Where a ticket `agent_id` is blocked on goes: up to its nearest working manager, to
        people when it has none (`to` None), given up after `max_attempts` escalations."""
        if ticket.escalations >= self.params.max_attempts:
            return Escalate(ticket.id, None, give_up=True)
        return Escalate(ticket.id, nearest_live_manager(self.org, agent_id, alive))

    # -- the simulator's bookkeeping -------------------------------------------------------
    def add_agent(self, agent: AgentLike, now: float) -> None:
        if agent.id not in self.org.agents:
            raise PolicyError(f"agent {agent.name!r} is not in the org chart")
        super().add_agent(agent, now)

    def _is_alive(self, agent_id: str) -> bool:
        return self.alive.get(agent_id, False)

    def _view(self, task: BoardTask) -> TicketView:
        return TicketView(task.id, task.skills, task.depth, escalated=task.id in self.escalated,
                          escalated_by=self.failed_by.get(task.id))

    def _charge(self, task: BoardTask, agent_id: str) -> None:
        self._uncharge(task)
        for member in self.org.chain(agent_id):
            self.load[member] += task.effort
        self._charged[task.id] = (agent_id, task.effort)

    def _uncharge(self, task: BoardTask) -> None:
        charged = self._charged.pop(task.id, None)
        if charged is not None:
            agent_id, effort = charged
            for member in self.org.chain(agent_id):
                self.load[member] -= effort

    def _to_inbox(self, task: BoardTask, agent_id: str) -> None:
        task.assignee = None
        heapq.heappush(self.inbox[agent_id], (-task.priority, task.seq, task))
        self._charge(task, agent_id)
        self._wakes.append(agent_id)

    def _to_pile(self, task: BoardTask, agent_id: str) -> None:
        self._charge(task, agent_id)
        if self.work.assign(task, agent_id):
            self._wakes.append(agent_id)

    def _on_posted(self, tasks: list[BoardTask], now: float) -> None:
        for task in tasks:
            if task.state.terminal:
                continue
            owner = self._charged.get(task.parent) if task.parent is not None else None
            if owner is not None:
                # Subtasks of a ticket stay with the ticket's owner to hand out.
                self._to_inbox(task, owner[0])
            else:
                self._to_inbox(task, self.acting_root)

    def post_integration(self, task: TaskLike, owner: str, now: float) -> None:
        """An integration task goes to the owner's nearest working manager (the root's own
        to the root), who decides it like any ticket."""
        posted = self.board.post_many([task], now)
        boss = nearest_live_manager(self.org, owner, self._is_alive) or self.acting_root
        for ticket in posted:
            self._to_inbox(ticket, boss)
        self._absorb(now)

    def _on_ready(self, task: BoardTask, now: float) -> None:
        if task.assignee is not None:
            self.work.push_ready(task)
            self._wakes.append(task.assignee)
        # An unassigned ready ticket is in some inbox already; its holder decides.

    # -- deciding ----------------------------------------------------------------------------
    def choose(self, agent_id: str, now: float, rng: RandomLike) -> Decision:
        self.decisions += 1
        if not self._is_alive(agent_id):
            raise PolicyError(f"agent {agent_id!r} is not an active member of this company")
        inbox = self.inbox[agent_id]
        if inbox:
            delegated = self._plan(agent_id, inbox)
            if delegated:
                return Delegate(tuple(a for d in delegated for a in d.assignments),
                                may_hire=all(d.may_hire for d in delegated))
        task = self.work.pop_ready(agent_id)
        if task is not None:
            return Take(task.id)
        return Idle(None)

    def _plan(self, agent_id: str, inbox: list[tuple[int, int, BoardTask]]) -> list[Delegate]:
        delegated: list[Delegate] = []
        in_flight = self.in_flight.setdefault(agent_id, [])
        while inbox and len(delegated) < self.params.batch:
            _, _, task = heapq.heappop(inbox)
            if task.state.terminal:
                self._uncharge(task)
                continue
            decision = self.decide_ticket(agent_id, self._view(task), self._is_alive, self.load)
            if not isinstance(decision, Delegate):
                self._to_pile(task, agent_id)
                continue
            in_flight.append(task)
            delegated.append(decision)
        return delegated

    def on_delegated(
        self, agent_id: str, assignments: Sequence[tuple[str, str]], now: float
    ) -> None:
        """The manager finished handing these tickets down."""
        flying = {t.id: t for t in self.in_flight.pop(agent_id, [])}
        for task_id, target in assignments:
            task = flying.pop(task_id, None) or self.board.get(task_id)
            self.escalated.discard(task_id)
            if task.state.terminal:
                self._uncharge(task)
                continue
            self.delegations += 1
            if not self._is_alive(target):
                self._to_inbox(task, nearest_live_manager(self.org, target, self._is_alive)
                               or agent_id)
            elif self.delegable(target, self._view(task), self._is_alive):
                self._to_inbox(task, target)
            else:
                self._to_pile(task, target)
        if flying:  # not in this batch after all: back to the inbox
            for task in flying.values():
                self._to_inbox(task, agent_id)
        self._absorb(now)

    # -- outcomes ----------------------------------------------------------------------------
    def _on_terminal(self, task: BoardTask, now: float) -> None:
        self._uncharge(task)

    def on_task_finished(self, task_id: str, agent_id: str, success: bool, now: float) -> None:
        task = self.board.get(task_id)
        self.board.finish(task_id, agent_id, success, now)
        if not task.state.terminal:
            # A failed attempt escalates to the manager, who decides again. The board's attempt
            # cap gives it up, so the escalation count does not.
            self.escalations += 1
            self.failed_by[task.id] = agent_id
            self.escalated.add(task.id)
            boss = self.escalation(agent_id, self._view(task), self._is_alive).to
            self._to_inbox(task, boss if boss is not None else agent_id)
        self._absorb(now)

    def _on_lost(self, agent_id: str, now: float) -> None:
        if agent_id == self.acting_root:
            self.acting_root = acting_root(self.org, self._is_alive) or self.acting_root
        heir = nearest_live_manager(self.org, agent_id, self._is_alive)
        orphans = [t for _, _, t in self.inbox[agent_id]]
        self.inbox[agent_id] = []
        orphans += self.in_flight.pop(agent_id, [])
        orphans += self.work.take_back(agent_id)
        for task in orphans:
            if task.state.terminal:
                self._uncharge(task)
            elif heir is not None:
                self.escalations += 1
                self._to_inbox(task, heir)


def review_delegate(
    org: OrgChart,
    manager_id: str,
    named: str | None,
    skills: Sequence[str],
    load: Mapping[str, float],
    alive: Callable[[str], bool] = lambda _agent: True,
    exclude: str | None = None,
) -> tuple[str | None, str | None]:
    """Check a manager's (the LLM's) choice of report against the org chart and capabilities.

    Returns (report id, correction): the named report when it is a live report whose part of the
    org can do the ticket; otherwise `choose_delegate`'s pick and why the choice was corrected
    (not a report, gone, excluded after it escalated the ticket, or lacking every skill the
    ticket needs while another report has some). (None, None) when the manager has no report."""
    reports = org.live_reports(manager_id, alive)
    if not reports:
        return None, None
    fallback = choose_delegate(org, manager_id, skills, load, alive, exclude=exclude)
    if named is None or not named.strip():
        return fallback, "no report was named"
    wanted = named.strip()
    by_name = {org.agents[r].name.lower(): r for r in reports}
    chosen = wanted if wanted in reports else by_name.get(wanted.lower())
    if chosen is None:
        known = next((a for a in org.agents.values() if wanted in (a.id, a.name)), None)
        why = (f"{wanted!r} is not a direct report of {org.agents[manager_id].name}"
               if known is None or org.manager.get(known.id) != manager_id
               else f"{wanted!r} is no longer working")
        return fallback, why
    if chosen == exclude and fallback is not None and fallback != exclude:
        return fallback, f"{org.agents[chosen].name} escalated this ticket already"
    if skills and fallback is not None and delegation_score(org, chosen, skills) == 0 \
            and delegation_score(org, fallback, skills) > 0:
        return fallback, (f"{org.agents[chosen].name}'s part of the org declares none of the "
                          f"ticket's skills ({', '.join(skills)})")
    return chosen, None


AUTO_DECISIONS = ("approve", "reject", "ask")


def auto_decision(config: Mapping[str, object], kind: str) -> str | None:
    """The hive's explicit auto-approval policy for an approval kind: "approve", "reject", or
    None when a person must decide. Read from hive config `approvals: {kind: decision}`; an
    unknown value raises PolicyError (a typo must not approve spend)."""
    table = config.get("approvals")
    if table is None:
        return None
    if not isinstance(table, Mapping):
        raise PolicyError("hive config `approvals` must map an approval kind (budget_override, "
                          "hire, strategy) to approve, reject or ask")
    value = table.get(kind, "ask")
    if value not in AUTO_DECISIONS:
        raise PolicyError(f"hive config approvals.{kind} is {value!r}; use approve, reject or ask")
    return None if value == "ask" else str(value)
