"""Rows <-> model for the SQL store: the column lists, the converters both ways, the fields an
update may change, and the NUL guard every write passes. Depends on the core model and errors.

Timestamps are stored as float epoch seconds and JSON as text, identically on both databases.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from ruflo.errors import Unstorable
from ruflo.model import (
    JSON,
    LOCAL_USER,
    AdapterKind,
    Agent,
    AgentStatus,
    Approval,
    ApprovalKind,
    ApprovalStatus,
    Budget,
    Conversation,
    CostKind,
    Event,
    Hive,
    HiveDriver,
    HiveStatus,
    LedgerEntry,
    MemoryEntry,
    Message,
    Mode,
    Task,
    TaskOutline,
    TaskState,
)

dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str).encode
loads = json.loads
_from_ts = datetime.fromtimestamp


def epoch(value: datetime | None) -> float | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def dt(value: float | None) -> datetime | None:
    return None if value is None else _from_ts(value, UTC)


def dt_req(value: float) -> datetime:
    return _from_ts(value, UTC)


# -- rows <-> model ------------------------------------------------------------------------------

DRIVER_COLS = "hive_id, instance, host, pid, driving_since, driver_until"


def read_driver(row: Sequence[Any]) -> HiveDriver:
    return HiveDriver(hive_id=row[0], instance=row[1], host=row[2], pid=int(row[3]),
                      driving_since=dt_req(row[4]), driver_until=dt_req(row[5]))


HIVE_COLS = ("id, name, mode, objective, status, pause_reason, budget_tokens, budget_cost, "
             "workspace, config, owner, created_at, updated_at")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"holds {name}, which JSON can't carry")


def _json_object(text: str) -> JSON:
    value = json.loads(text, parse_constant=_refuse_constant)
    if not isinstance(value, dict):
        raise ValueError(f"is a JSON {type(value).__name__}, not an object")
    return value


_UNREADABLE = (ValueError, TypeError, RecursionError)
"""What converting a row that was written past ruflo (by hand, by a broken writer) may raise."""


def read_hive(row: Sequence[Any]) -> Hive:
    try:
        return Hive(id=row[0], name=row[1], mode=Mode(row[2]), objective=row[3],
                    status=HiveStatus(row[4]), pause_reason=row[5],
                    budget=Budget(row[6], row[7]), workspace=row[8],
                    config=_json_object(row[9]), owner=row[10] or LOCAL_USER,
                    created_at=dt_req(row[11]),
                    updated_at=dt_req(row[12]))
    except _UNREADABLE:
        return _damaged_hive(row)


def _damaged_hive(row: Sequence[Any]) -> Hive:
    """A hive row that can't be read whole, read field by field: what can't be read is given a
    safe stand-in (an unknown status reads as paused, so no engine runs it) and `damage` says
    which fields those are. One bad row must not make every list of hives fail."""
    problems: list[str] = []

    def read(what: str, convert: Callable[[Any], Any], value: Any, stand_in: Any,
             shown_as: str) -> Any:
        try:
            return convert(value)
        except _UNREADABLE as error:
            cause = "nested too deep" if isinstance(error, RecursionError) else str(error)
            problems.append(f"{what} can't be read ({cause[:120]}){shown_as}")
            return stand_in

    now = time.time()
    hive = Hive(
        id=row[0], name=str(row[1]), objective=str(row[3]), pause_reason=row[5],
        mode=read("mode", Mode, row[2], Mode.SWARM, ", shown as swarm"),
        status=read("status", HiveStatus, row[4], HiveStatus.PAUSED, ", shown as paused"),
        budget=Budget(row[6], row[7]), workspace=row[8], owner=row[10] or LOCAL_USER,
        config=read("config", _json_object, row[9], {}, ", shown as empty"),
        created_at=read("created_at", dt_req, row[11], dt_req(now), ""),
        updated_at=read("updated_at", dt_req, row[12], dt_req(now), ""))
    return replace(hive, damage="the stored hive can't be read whole: " + "; ".join(problems))


AGENT_COLS = ("id, hive_id, name, role, title, capabilities, skills, thresholds, adapter, "
              "adapter_config, model, reports_to, budget_tokens, budget_cost, spent_tokens, "
              "spent_cost, status, current_task, heartbeat_at, worker_id")


def read_agent(row: Sequence[Any]) -> Agent:
    return Agent(id=row[0], hive_id=row[1], name=row[2], role=row[3], title=row[4],
                 capabilities=row[5], skills=tuple(loads(row[6])), thresholds=loads(row[7]),
                 adapter=AdapterKind(row[8]), adapter_config=loads(row[9]), model=row[10],
                 reports_to=row[11], budget=Budget(row[12], row[13]), spent_tokens=row[14],
                 spent_cost=row[15], status=AgentStatus(row[16]), current_task=row[17],
                 heartbeat_at=dt(row[18]), worker_id=row[19])


def agent_params(agent: Agent, hive_id: str, ord_: int) -> tuple[Any, ...]:
    return (agent.id, hive_id, agent.name, agent.role, agent.title, agent.capabilities,
            dumps(list(agent.skills)), dumps(agent.thresholds), str(agent.adapter),
            dumps(agent.adapter_config), agent.model, agent.reports_to,
            agent.budget.max_tokens, agent.budget.max_cost, agent.spent_tokens, agent.spent_cost,
            str(agent.status), agent.current_task, epoch(agent.heartbeat_at), agent.worker_id,
            ord_)


TASK_COLS = ("id, hive_id, title, description, parent_id, skills, priority, effort, depends_on, "
             "state, assignee, lease_until, attempts, stimulus, verify, result, verified, "
             "blocked_on, depth, created_at, updated_at, claimed_at, finished_at")


TASK_FIELDS = tuple(name.strip() for name in TASK_COLS.split(","))
"""The values of a row from `SqlStore.list_task_rows`, in order."""

_TASK_STATES = {str(state): state for state in TaskState}


def _id_list(text: str) -> tuple[str, ...]:
    return () if text == "[]" else tuple(loads(text))


def read_task(row: Sequence[Any]) -> Task:
    verified = row[16]
    return Task(id=row[0], hive_id=row[1], title=row[2], description=row[3], parent_id=row[4],
                skills=_id_list(row[5]), priority=row[6], effort=float(row[7]),
                depends_on=_id_list(row[8]), state=_TASK_STATES[row[9]], assignee=row[10],
                lease_until=dt(row[11]), attempts=row[12], verify=row[14],
                result=row[15], verified=None if verified is None else bool(verified),
                blocked_on=row[17], depth=row[18], created_at=dt_req(row[19]),
                updated_at=dt_req(row[20]), claimed_at=dt(row[21]), finished_at=dt(row[22]))


OUTLINE_COLS = ("id, state, parent_id, skills, priority, effort, depends_on, assignee, attempts, "
                "created_at, updated_at, finished_at")


def outline_reader() -> Callable[[Sequence[Any]], TaskOutline]:
    """Rows of OUTLINE_COLS to TaskOutlines, for one board: a skills list is decoded once per
    distinct text (a board's tasks share a few), and the tuple is shared."""
    skills: dict[str, tuple[str, ...]] = {}

    def read(row: Sequence[Any]) -> TaskOutline:
        text = row[3]
        shared = skills.get(text)
        if shared is None:
            shared = skills[text] = _id_list(text)
        return TaskOutline(row[0], _TASK_STATES[row[1]], row[2], shared, row[4], float(row[5]),
                           _id_list(row[6]), row[7], row[8], dt_req(row[9]), dt_req(row[10]),
                           dt(row[11]))

    return read


EVENT_COLS = "seq, hive_id, kind, ts, agent_id, task_id, data"
Queued = tuple[float, str, str | None, str | None, JSON]
"""An event waiting for its seq (Postgres): ts, kind, agent_id, task_id, data."""


def read_event(row: Sequence[Any]) -> Event:
    return Event(seq=row[0], hive_id=row[1], kind=row[2], ts=dt_req(row[3]), agent_id=row[4],
                 task_id=row[5], data=loads(row[6]))


LEDGER_COLS = ("id, ts, model, prompt_tokens, completion_tokens, cost, cost_source, kind, "
               "hive_id, agent_id, task_id, request_id")


def read_ledger(row: Sequence[Any]) -> LedgerEntry:
    return LedgerEntry(id=row[0], ts=dt_req(row[1]), model=row[2], prompt_tokens=row[3],
                       completion_tokens=row[4], cost=row[5], cost_source=row[6],
                       kind=CostKind(row[7]), hive_id=row[8], agent_id=row[9], task_id=row[10],
                       request_id=row[11])


APPROVAL_COLS = ("id, hive_id, kind, subject, status, agent_id, data, decided_by, created_at, "
                 "decided_at")


def read_approval(row: Sequence[Any]) -> Approval:
    return Approval(id=row[0], hive_id=row[1], kind=ApprovalKind(row[2]), subject=row[3],
                    status=ApprovalStatus(row[4]), agent_id=row[5], data=loads(row[6]),
                    decided_by=row[7], created_at=dt_req(row[8]), decided_at=dt(row[9]))


CONVERSATION_COLS = ("id, user_id, title, model, preprompt, root_message_id, data, created_at, "
                     "updated_at")


def read_conversation(row: Sequence[Any]) -> Conversation:
    return Conversation(id=row[0], user_id=row[1], title=row[2], model=row[3], preprompt=row[4],
                        root_message_id=row[5], data=loads(row[6]),
                        created_at=dt_req(row[7]), updated_at=dt_req(row[8]))


MESSAGE_COLS = ("id, conversation_id, role, content, parent_id, interrupted, data, created_at, "
                "updated_at")


def read_message(row: Sequence[Any]) -> Message:
    return Message(id=row[0], conversation_id=row[1], role=row[2], content=row[3],
                   parent_id=row[4], interrupted=bool(row[5]), data=loads(row[6]),
                   created_at=dt_req(row[7]), updated_at=dt_req(row[8]))


MEMORY_COLS = "namespace, key, content, tags, created_at, updated_at"


def read_memory(row: Sequence[Any], score: float | None = None) -> MemoryEntry:
    return MemoryEntry(namespace=row[0], key=row[1], content=row[2], tags=tuple(loads(row[3])),
                       created_at=dt_req(row[4]), updated_at=dt_req(row[5]), score=score)


TOKEN_COLS = "id, name, user_id, created_at, revoked_at, scopes"


def read_token(row: Sequence[Any]) -> JSON:
    return {"id": row[0], "name": row[1], "user_id": row[2],
            "created_at": dt_req(row[3]).isoformat(),
            "revoked_at": None if row[4] is None else dt_req(row[4]).isoformat(),
            "scopes": list(loads(row[5]))}


# Plain-field updates: field -> (column, encoder). Budget spans two columns, handled apart.
def _identity(value: Any) -> Any:
    return value


def _json_list(value: Any) -> str:
    return dumps(list(value))


def _enum_text(value: Any) -> str | None:
    return None if value is None else str(value)


def _bool_or_none(value: Any) -> bool | None:
    return None if value is None else bool(value)


HIVE_UPDATES: dict[str, Callable[[Any], Any]] = {
    "name": _identity, "objective": _identity, "mode": _enum_text, "status": _enum_text,
    "pause_reason": _identity, "workspace": _identity, "config": dumps, "owner": _identity,
}
AGENT_UPDATES: dict[str, Callable[[Any], Any]] = {
    "name": _identity, "role": _identity, "title": _identity, "capabilities": _identity,
    "skills": _json_list, "thresholds": dumps, "adapter": _enum_text, "adapter_config": dumps,
    "model": _identity, "reports_to": _identity, "spent_tokens": _identity,
    "spent_cost": _identity, "status": _enum_text, "current_task": _identity,
    "heartbeat_at": epoch, "worker_id": _identity,
}
TASK_UPDATES: dict[str, Callable[[Any], Any]] = {
    "title": _identity, "description": _identity, "parent_id": _identity, "skills": _json_list,
    "priority": _identity, "effort": _identity, "state": _enum_text, "assignee": _identity,
    "lease_until": epoch, "attempts": _identity, "verify": _identity, "result": _identity,
    "verified": _bool_or_none, "blocked_on": _identity, "depth": _identity, "claimed_at": epoch,
    "finished_at": epoch,
}
CONVERSATION_UPDATES: dict[str, Callable[[Any], Any]] = {
    "title": _identity, "model": _identity, "preprompt": _identity, "root_message_id": _identity,
    "data": dumps, "user_id": _identity, "updated_at": epoch,
}
MESSAGE_UPDATES: dict[str, Callable[[Any], Any]] = {
    "content": _identity, "role": _identity, "parent_id": _identity, "interrupted": bool,
    "data": dumps, "updated_at": epoch,
}

UPDATABLE = {"hives": HIVE_UPDATES, "agents": AGENT_UPDATES, "tasks": TASK_UPDATES,
             "conversations": CONVERSATION_UPDATES, "messages": MESSAGE_UPDATES}
"""Per table: the fields `update_*` may change (each the name of its column), with their encoder."""


def refuse_nul(kind: str, fields: dict[str, Any]) -> None:
    """Refuse text holding a NUL character, on SQLite as on Postgres (which can't store one),
    before anything is written. JSON columns need no check: JSON writes a NUL as an escape."""
    for name, value in fields.items():
        if type(value) is str:
            if "\x00" not in value:
                continue
        elif isinstance(value, (tuple, list)):
            if not any(type(item) is str and "\x00" in item for item in value):
                continue
        else:
            continue
        raise Unstorable(f"the {kind}'s {name} holds a NUL character (\\x00), which the store "
                         "can't hold; nothing was stored")


def holds_nul(params: Sequence[Any]) -> bool:
    return any(type(value) is str and "\x00" in value for value in params)


def assignments(kind: str, table: dict[str, Callable[[Any], Any]],
                 fields: dict[str, Any]) -> tuple[list[str], list[Any]]:
    refuse_nul(kind, fields)
    columns: list[str] = []
    values: list[Any] = []
    for name, value in fields.items():
        if name == "budget" and kind in ("hive", "agent"):
            budget = value if isinstance(value, Budget) else Budget(**value)
            columns += ["budget_tokens = ?", "budget_cost = ?"]
            values += [budget.max_tokens, budget.max_cost]
            continue
        if name not in table:
            raise TypeError(f"{kind} has no updatable field {name!r}")
        columns.append(f"{name} = ?")
        values.append(table[name](value))
    return columns, values

