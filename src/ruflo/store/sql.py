"""The Store on SQLite and Postgres: one implementation, dialect-specific statements isolated in
`_Statements`. Depends on the core model, ruflo.store.opening and the DB drivers.

SQLAlchemy creates the engines and Alembic owns the schema; the statements themselves run on the
driver connection (one per thread, with its prepared-statement cache), because the claim and
finish path must cost tens of microseconds, which SQLAlchemy's execution layer alone exceeds.
Timestamps are stored as float epoch seconds and JSON as text, identically on both databases.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ruflo.errors import (
    Conflict,
    NotFound,
    PolicyError,
    StoreError,
    StoreFull,
    StoreUnreachable,
    Unstorable,
)
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
    TaskState,
    find_cycle,
)
from ruflo.store import opening
from ruflo.store.base import EventListener, Spend, iter_batches

log = logging.getLogger("ruflo.store")

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str).encode
_loads = json.loads
_from_ts = datetime.fromtimestamp
_TERMINAL = ("done", "failed", "cancelled")
_WORD = re.compile(r"\w+", re.UNICODE)
_MAX_SEARCH_WORDS = 32
_PROBE_BYTES = 256 * 1024


def _epoch(value: datetime | None) -> float | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def _dt(value: float | None) -> datetime | None:
    return None if value is None else _from_ts(value, UTC)


def _dt_req(value: float) -> datetime:
    return _from_ts(value, UTC)


# -- rows <-> model ------------------------------------------------------------------------------

DRIVER_COLS = "hive_id, instance, host, pid, driving_since, driver_until"


def _driver(row: Sequence[Any]) -> HiveDriver:
    return HiveDriver(hive_id=row[0], instance=row[1], host=row[2], pid=int(row[3]),
                      driving_since=_dt_req(row[4]), driver_until=_dt_req(row[5]))


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


def _hive(row: Sequence[Any]) -> Hive:
    try:
        return Hive(id=row[0], name=row[1], mode=Mode(row[2]), objective=row[3],
                    status=HiveStatus(row[4]), pause_reason=row[5],
                    budget=Budget(row[6], row[7]), workspace=row[8],
                    config=_json_object(row[9]), owner=row[10] or LOCAL_USER,
                    created_at=_dt_req(row[11]),
                    updated_at=_dt_req(row[12]))
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
        created_at=read("created_at", _dt_req, row[11], _dt_req(now), ""),
        updated_at=read("updated_at", _dt_req, row[12], _dt_req(now), ""))
    return replace(hive, damage="the stored hive can't be read whole: " + "; ".join(problems))


AGENT_COLS = ("id, hive_id, name, role, title, capabilities, skills, thresholds, adapter, "
              "adapter_config, model, reports_to, budget_tokens, budget_cost, spent_tokens, "
              "spent_cost, status, current_task, heartbeat_at, worker_id")


def _agent(row: Sequence[Any]) -> Agent:
    return Agent(id=row[0], hive_id=row[1], name=row[2], role=row[3], title=row[4],
                 capabilities=row[5], skills=tuple(_loads(row[6])), thresholds=_loads(row[7]),
                 adapter=AdapterKind(row[8]), adapter_config=_loads(row[9]), model=row[10],
                 reports_to=row[11], budget=Budget(row[12], row[13]), spent_tokens=row[14],
                 spent_cost=row[15], status=AgentStatus(row[16]), current_task=row[17],
                 heartbeat_at=_dt(row[18]), worker_id=row[19])


def _agent_params(agent: Agent, hive_id: str, ord_: int) -> tuple[Any, ...]:
    return (agent.id, hive_id, agent.name, agent.role, agent.title, agent.capabilities,
            _dumps(list(agent.skills)), _dumps(agent.thresholds), str(agent.adapter),
            _dumps(agent.adapter_config), agent.model, agent.reports_to,
            agent.budget.max_tokens, agent.budget.max_cost, agent.spent_tokens, agent.spent_cost,
            str(agent.status), agent.current_task, _epoch(agent.heartbeat_at), agent.worker_id,
            ord_)


TASK_COLS = ("id, hive_id, title, description, parent_id, skills, priority, effort, depends_on, "
             "state, assignee, lease_until, attempts, stimulus, verify, result, verified, "
             "blocked_on, depth, created_at, updated_at, claimed_at, finished_at")


TASK_FIELDS = tuple(name.strip() for name in TASK_COLS.split(","))
"""The values of a row from `SqlStore.list_task_rows`, in order."""

_TASK_STATES = {str(state): state for state in TaskState}


def _id_list(text: str) -> tuple[str, ...]:
    return () if text == "[]" else tuple(_loads(text))


def _task(row: Sequence[Any]) -> Task:
    verified = row[16]
    return Task(id=row[0], hive_id=row[1], title=row[2], description=row[3], parent_id=row[4],
                skills=_id_list(row[5]), priority=row[6], effort=float(row[7]),
                depends_on=_id_list(row[8]), state=_TASK_STATES[row[9]], assignee=row[10],
                lease_until=_dt(row[11]), attempts=row[12], stimulus=float(row[13]), verify=row[14],
                result=row[15], verified=None if verified is None else bool(verified),
                blocked_on=row[17], depth=row[18], created_at=_dt_req(row[19]),
                updated_at=_dt_req(row[20]), claimed_at=_dt(row[21]), finished_at=_dt(row[22]))


EVENT_COLS = "seq, hive_id, kind, ts, agent_id, task_id, data"
_Queued = tuple[float, str, str | None, str | None, JSON]
"""An event waiting for its seq (Postgres): ts, kind, agent_id, task_id, data."""


def _event(row: Sequence[Any]) -> Event:
    return Event(seq=row[0], hive_id=row[1], kind=row[2], ts=_dt_req(row[3]), agent_id=row[4],
                 task_id=row[5], data=_loads(row[6]))


LEDGER_COLS = ("id, ts, model, prompt_tokens, completion_tokens, cost, cost_source, kind, "
               "hive_id, agent_id, task_id, request_id")


def _ledger(row: Sequence[Any]) -> LedgerEntry:
    return LedgerEntry(id=row[0], ts=_dt_req(row[1]), model=row[2], prompt_tokens=row[3],
                       completion_tokens=row[4], cost=row[5], cost_source=row[6],
                       kind=CostKind(row[7]), hive_id=row[8], agent_id=row[9], task_id=row[10],
                       request_id=row[11])


APPROVAL_COLS = ("id, hive_id, kind, subject, status, agent_id, data, decided_by, created_at, "
                 "decided_at")


def _approval(row: Sequence[Any]) -> Approval:
    return Approval(id=row[0], hive_id=row[1], kind=ApprovalKind(row[2]), subject=row[3],
                    status=ApprovalStatus(row[4]), agent_id=row[5], data=_loads(row[6]),
                    decided_by=row[7], created_at=_dt_req(row[8]), decided_at=_dt(row[9]))


CONVERSATION_COLS = ("id, user_id, title, model, preprompt, root_message_id, data, created_at, "
                     "updated_at")


def _conversation(row: Sequence[Any]) -> Conversation:
    return Conversation(id=row[0], user_id=row[1], title=row[2], model=row[3], preprompt=row[4],
                        root_message_id=row[5], data=_loads(row[6]),
                        created_at=_dt_req(row[7]), updated_at=_dt_req(row[8]))


MESSAGE_COLS = ("id, conversation_id, role, content, parent_id, interrupted, data, created_at, "
                "updated_at")


def _message(row: Sequence[Any]) -> Message:
    return Message(id=row[0], conversation_id=row[1], role=row[2], content=row[3],
                   parent_id=row[4], interrupted=bool(row[5]), data=_loads(row[6]),
                   created_at=_dt_req(row[7]), updated_at=_dt_req(row[8]))


MEMORY_COLS = "namespace, key, content, tags, created_at, updated_at"


def _memory(row: Sequence[Any], score: float | None = None) -> MemoryEntry:
    return MemoryEntry(namespace=row[0], key=row[1], content=row[2], tags=tuple(_loads(row[3])),
                       created_at=_dt_req(row[4]), updated_at=_dt_req(row[5]), score=score)


TOKEN_COLS = "id, name, user_id, created_at, revoked_at, scopes"


def _token(row: Sequence[Any]) -> JSON:
    return {"id": row[0], "name": row[1], "user_id": row[2],
            "created_at": _dt_req(row[3]).isoformat(),
            "revoked_at": None if row[4] is None else _dt_req(row[4]).isoformat(),
            "scopes": list(_loads(row[5]))}


# Plain-field updates: field -> (column, encoder). Budget spans two columns, handled apart.
def _identity(value: Any) -> Any:
    return value


def _json_list(value: Any) -> str:
    return _dumps(list(value))


def _enum_text(value: Any) -> str | None:
    return None if value is None else str(value)


def _bool_or_none(value: Any) -> bool | None:
    return None if value is None else bool(value)


_HIVE_FIELDS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "name": ("name", _identity), "objective": ("objective", _identity),
    "mode": ("mode", _enum_text), "status": ("status", _enum_text),
    "pause_reason": ("pause_reason", _identity), "workspace": ("workspace", _identity),
    "config": ("config", _dumps), "owner": ("owner", _identity),
}
_AGENT_FIELDS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "name": ("name", _identity), "role": ("role", _identity), "title": ("title", _identity),
    "capabilities": ("capabilities", _identity), "skills": ("skills", _json_list),
    "thresholds": ("thresholds", _dumps), "adapter": ("adapter", _enum_text),
    "adapter_config": ("adapter_config", _dumps), "model": ("model", _identity),
    "reports_to": ("reports_to", _identity), "spent_tokens": ("spent_tokens", _identity),
    "spent_cost": ("spent_cost", _identity), "status": ("status", _enum_text),
    "current_task": ("current_task", _identity), "heartbeat_at": ("heartbeat_at", _epoch),
    "worker_id": ("worker_id", _identity),
}
_TASK_FIELDS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "title": ("title", _identity), "description": ("description", _identity),
    "parent_id": ("parent_id", _identity), "skills": ("skills", _json_list),
    "priority": ("priority", _identity), "effort": ("effort", _identity),
    "state": ("state", _enum_text), "assignee": ("assignee", _identity),
    "lease_until": ("lease_until", _epoch), "attempts": ("attempts", _identity),
    "stimulus": ("stimulus", _identity), "verify": ("verify", _identity),
    "result": ("result", _identity), "verified": ("verified", _bool_or_none),
    "blocked_on": ("blocked_on", _identity), "depth": ("depth", _identity),
    "claimed_at": ("claimed_at", _epoch), "finished_at": ("finished_at", _epoch),
}
_CONVERSATION_FIELDS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "title": ("title", _identity), "model": ("model", _identity),
    "preprompt": ("preprompt", _identity), "root_message_id": ("root_message_id", _identity),
    "data": ("data", _dumps), "user_id": ("user_id", _identity),
    "updated_at": ("updated_at", _epoch),
}
_MESSAGE_FIELDS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "content": ("content", _identity), "role": ("role", _identity),
    "parent_id": ("parent_id", _identity), "interrupted": ("interrupted", bool),
    "data": ("data", _dumps), "updated_at": ("updated_at", _epoch),
}


def _refuse_nul(kind: str, fields: dict[str, Any]) -> None:
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


def _holds_nul(params: Sequence[Any]) -> bool:
    return any(type(value) is str and "\x00" in value for value in params)


def _assignments(kind: str, table: dict[str, tuple[str, Callable[[Any], Any]]],
                 fields: dict[str, Any]) -> tuple[list[str], list[Any]]:
    _refuse_nul(kind, fields)
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
        column, encode = table[name]
        columns.append(f"{column} = ?")
        values.append(encode(value))
    return columns, values


# -- dialects ------------------------------------------------------------------------------------

class _Statements:
    """The few statements that differ between SQLite and Postgres, and the parameter style."""

    def __init__(self, dialect: str) -> None:
        self.dialect = dialect
        self.postgres = dialect == "postgresql"
        self._cache: dict[str, str] = {}
        self.begin_write = "BEGIN" if self.postgres else "BEGIN IMMEDIATE"
        lock = " FOR UPDATE SKIP LOCKED" if self.postgres else ""
        claim_set = ("UPDATE tasks SET state = 'claimed', assignee = ?, lease_until = ?, "
                     "attempts = attempts + 1, claimed_at = ?, updated_at = ? WHERE id = ")
        self.claim_next = self.q(
            claim_set + "(SELECT id FROM tasks WHERE hive_id = ? AND state = 'open' AND "
            f"pending_deps = 0 ORDER BY priority DESC, ord LIMIT 1{lock}) "
            f"AND state = 'open' RETURNING {TASK_COLS}")
        self.claim_one = self.q(
            claim_set + "(SELECT id FROM tasks WHERE id = ? AND hive_id = ? AND state = 'open' "
            f"AND pending_deps = 0{lock}) AND state = 'open' RETURNING {TASK_COLS}")
        # Postgres: the first claimable of several, in the caller's order, passing over rows
        # other claimers hold right now (SQLite's writers take turns: claim_one each).
        self.claim_first = self.q(
            claim_set + "(SELECT id FROM tasks WHERE id = ANY(?) AND hive_id = ? AND "
            "state = 'open' AND pending_deps = 0 ORDER BY array_position(?, id) LIMIT 1"
            f"{lock}) AND state = 'open' RETURNING {TASK_COLS}") if self.postgres else ""
        self.expiring = ("SELECT id, assignee FROM tasks WHERE state = 'claimed' AND "
                         "lease_until < ? {hive} ORDER BY lease_until" + lock)
        # Postgres: the hive row's counter hands out seqs, its row lock serialising appenders
        # of one hive (see SqlStore._sequence_and_commit for why the sequence stays gap-free
        # and why the lock is taken last). SQLite: writers are already serialised (BEGIN
        # IMMEDIATE), so the next seq is read from the events' primary key, sparing a page write
        # per transaction.
        self.bump_seq = ""
        self.sequence_events = ""
        if self.postgres:
            # Counter bump and inserts in one statement: the lock it takes is held for this
            # statement and the COMMIT only.
            self.sequence_events = (
                # An unknown hive leaves the counter NULL, which the insert refuses: the
                # statement fails rather than inserting nothing (its COMMIT may be on the wire).
                "WITH s AS (UPDATE hives SET last_seq = last_seq + %(n)s WHERE id = %(hive)s "
                "RETURNING last_seq) INSERT INTO events (hive_id, seq, ts, kind, agent_id, "
                "task_id, data) SELECT %(hive)s, (SELECT last_seq FROM s) - %(n)s + e.n, e.ts, "
                "e.kind, e.agent_id, e.task_id, e.data FROM unnest(%(ts)s::float8[], "
                "%(kind)s::text[], %(agent)s::text[], %(task)s::text[], %(data)s::text[]) "
                "WITH ORDINALITY AS e(ts, kind, agent_id, task_id, data, n) RETURNING seq")
        else:
            self.bump_seq = ("SELECT (SELECT COALESCE(MAX(seq), 0) FROM events WHERE "
                             "hive_id = h.id) + ? FROM hives h WHERE h.id = ?")
        self.last_seq = (  # run through SqlStore._read, which translates placeholders
            "SELECT last_seq FROM hives WHERE id = ?" if self.postgres else
            "SELECT (SELECT COALESCE(MAX(seq), 0) FROM events WHERE hive_id = h.id) "
            "FROM hives h WHERE h.id = ?")
        self.insert_event = self.q(
            "INSERT INTO events (hive_id, seq, ts, kind, agent_id, task_id, data) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)")
        self.notify = "SELECT pg_notify('ruflo_events', p) FROM unnest(%s::text[]) AS p"

    def q(self, sql: str) -> str:
        """Translate `?` placeholders to the driver's style (psycopg wants %s)."""
        if not self.postgres:
            return sql
        cached = self._cache.get(sql)
        if cached is None:
            cached = self._cache[sql] = sql.replace("%", "%%").replace("?", "%s")
        return cached


class _ThreadState:
    __slots__ = ("conn", "cur", "deferred", "depth", "notices", "pending", "thread")

    def __init__(self, conn: Any, thread: threading.Thread) -> None:
        self.conn = conn
        self.cur = conn.cursor()
        self.depth = 0
        self.pending: list[Event] = []
        self.deferred: dict[str, list[_Queued]] = {}
        """Postgres: events of the open transaction waiting for their seqs, by hive."""
        self.notices: list[tuple[str, int]] = []
        """Postgres: (hive, seq) of the events to announce once the transaction has committed."""
        self.thread = thread


class SqlStore:
    """The Store protocol on SQLite (embedded, WAL) or Postgres (psycopg 3)."""

    def __init__(self, url: str, *, sqlite_synchronous: str = "normal") -> None:
        url = opening.normalise_url(url)
        self.url = opening.mask_password(url)
        self.created = False
        """True when this open created a new, empty store (the boot trace says so)."""
        self.path: Path | None = None
        self._listeners: list[EventListener] = []
        self._states: dict[int, _ThreadState] = {}
        self._states_lock = threading.Lock()
        self._local = threading.local()
        self._closed = False
        self.write_failure: str | None = None
        """Why a write failed for want of space, until `check_writes` finds space again. (A
        later commit does not clear it: one that wrote nothing would prove nothing.)"""
        if url.startswith("sqlite"):
            self.dialect = "sqlite"
            self.path = opening.sqlite_file(url)
            self._connect, self.created = opening.open_sqlite(self.path, sqlite_synchronous)
            self._operational: tuple[type[BaseException], ...] = (sqlite3.OperationalError,)
            self._integrity: tuple[type[BaseException], ...] = (sqlite3.IntegrityError,)
            self._data: tuple[type[BaseException], ...] = (sqlite3.DataError,)
        elif url.startswith("postgresql"):
            psycopg = opening.postgres_driver()  # an extra: one line on what to install
            self.dialect = "postgresql"
            engine = opening.pg_engine(url)
            opening.prepare_pg(engine, url)
            self._engine = engine
            self._connect = lambda: opening.pg_connect(engine, url)
            self._operational = (psycopg.OperationalError,)
            self._integrity = (psycopg.IntegrityError,)
            self._data = (psycopg.DataError,)
        else:
            raise StoreError(f"unsupported store URL {self.url!r}: use sqlite:///PATH or "
                             "postgresql://USER@HOST/DB")
        self._sql = _Statements(self.dialect)
        self._q = self._sql.q
        self._where = opening.describe_pg(url) if self.dialect == "postgresql" else str(self.path)

    # -- connections and transactions ------------------------------------------------------------
    def _state(self) -> _ThreadState:
        try:
            state: _ThreadState = self._local.state
        except AttributeError:
            return self._new_state()
        if self._sql.postgres and state.conn.driver_connection.closed:
            return self._new_state()
        return state

    def _new_state(self) -> _ThreadState:
        if self._closed:
            raise StoreError("the store is closed")
        thread = threading.current_thread()
        state = _ThreadState(self._connect(), thread)
        self._local.state = state
        with self._states_lock:
            for key, other in list(self._states.items()):
                if not other.thread.is_alive():
                    del self._states[key]
                    self._close_conn(other.conn)
            old = self._states.get(id(state))
            self._states[id(state)] = state
            if old is not None:
                self._close_conn(old.conn)
        return state

    @staticmethod
    def _close_conn(conn: Any) -> None:
        try:
            conn.close()
        except Exception:
            log.warning("closing a store connection failed", exc_info=True)

    def close(self) -> None:
        self._closed = True
        with self._states_lock:
            states = list(self._states.values())
            self._states.clear()
        for state in states:
            self._close_conn(state.conn)
        self._local = threading.local()
        engine = getattr(self, "_engine", None)
        if engine is not None:
            engine.dispose()

    def ping(self) -> None:
        try:
            cur = self._state().cur
            cur.execute("SELECT 1")
            cur.fetchall()
        except StoreError:
            raise
        except Exception as error:
            raise StoreUnreachable(f"store at {self._where} does not answer: "
                                   f"{opening.pg_cause(error)}") from None

    @contextmanager
    def transaction(self) -> Iterator[None]:
        state = self._state()
        if state.depth:
            state.depth += 1
            try:
                yield
            finally:
                state.depth -= 1
            return
        cur = state.cur
        try:
            cur.execute(self._sql.begin_write)
        except self._operational as error:
            self._drop_state(state)
            raise self._translate(error) from None
        state.depth = 1
        state.pending = []
        try:
            yield
            if state.deferred:
                self._sequence_and_commit(state)
            else:
                cur.execute("COMMIT")
        except BaseException as error:
            state.depth = 0
            state.pending = []
            state.deferred = {}
            state.notices = []
            self._rollback(state)
            if isinstance(error, (*self._operational, *self._integrity, *self._data)):
                raise self._translate(error) from None
            raise
        state.depth = 0
        if state.notices:
            self._notify(state)
        pending, state.pending = state.pending, []
        for event in pending:
            for listener in list(self._listeners):
                try:
                    listener(event)
                except Exception:
                    log.exception("event listener %r failed on %s #%d", listener, event.kind,
                                  event.seq)

    def _rollback(self, state: _ThreadState) -> None:
        try:
            state.cur.execute("ROLLBACK")
        except Exception:
            # The connection itself is gone or broken: start afresh on the next call.
            self._drop_state(state)

    def _drop_state(self, state: _ThreadState) -> None:
        with self._states_lock:
            self._states.pop(id(state), None)
        self._close_conn(state.conn)
        if getattr(self._local, "state", None) is state:
            del self._local.state

    def _translate(self, error: BaseException) -> StoreError:
        cause = opening.pg_cause(error)
        if isinstance(error, self._integrity):
            return Conflict(f"the store refused a change: {cause}; nothing was changed")
        if isinstance(error, self._data):
            return Unstorable(f"the store can't hold a value given: {cause}; nothing was changed")
        if self._out_of_space(error):
            self.write_failure = cause
            return self._full(cause)
        if self._sql.postgres:
            return StoreUnreachable(f"lost the Postgres store at {self._where}: {cause}; the "
                                    "change was not saved")
        return StoreError(f"the SQLite store at {self._where} failed: {cause}; the change was "
                          "not saved")

    def _out_of_space(self, error: BaseException) -> bool:
        if self._sql.postgres:
            return getattr(error, "sqlstate", None) == "53100"  # disk_full
        code = getattr(error, "sqlite_errorcode", None)
        return code is not None and code & 0xFF == sqlite3.SQLITE_FULL

    def _full(self, cause: str) -> StoreFull:
        return StoreFull(f"the store's disk is full ({self._where}: {cause}); nothing was "
                         "changed. Free some space there: ruflo takes writes again by itself")

    def check_writes(self) -> None:
        """Raise StoreFull while writes fail for want of space. Free (nothing is written) until
        a write has failed so; after that, each call makes a small probe write, and the first
        that succeeds clears the failure."""
        if self.write_failure is None:
            return
        try:
            if self._sql.postgres:
                self._probe_pg()
            else:
                self._probe_sqlite()
        except StoreFull:
            raise
        except OSError as error:
            if error.errno != errno.ENOSPC:
                raise StoreError(f"the store's folder can't be written: {error}") from None
            self.write_failure = str(error)
            raise self._full(os.strerror(error.errno)) from None
        self.write_failure = None

    def _probe_sqlite(self) -> None:
        # SQLite writes its pages at commit, so a rolled-back write proves nothing: write (and
        # remove) a file of some pages beside the database instead.
        assert self.path is not None
        probe = self.path.with_name(self.path.name + "-space-probe")
        try:
            with probe.open("wb") as out:
                out.write(os.urandom(_PROBE_BYTES))
                out.flush()
                os.fsync(out.fileno())
        finally:
            probe.unlink(missing_ok=True)

    def _probe_pg(self) -> None:
        # Postgres extends a table's files when a row needs a new page, before commit: a
        # rolled-back insert of some pages' worth of text meets a full disk as a real one would.
        now = time.time()
        state = self._state()
        if state.depth:
            return
        try:
            state.cur.execute("BEGIN")
            state.cur.execute(self._q(
                "INSERT INTO hives (id, name, mode, objective, status, config, created_at, "
                "updated_at, last_seq) VALUES (?, ?, 'solo', ?, 'cancelled', '{}', ?, ?, 0)"),
                (f"space-probe-{os.urandom(8).hex()}", "space probe", os.urandom(_PROBE_BYTES // 2).hex(), now, now))
        except self._operational as error:
            self._rollback(state)
            raise self._translate(error) from None
        self._rollback(state)

    def add_listener(self, listener: EventListener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: EventListener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        cur = self._state().cur
        try:
            cur.execute(self._q(sql), params)
            return cur.fetchall()  # type: ignore[no-any-return]
        except self._operational as error:
            raise self._translate(error) from None
        except self._data:
            # Postgres can't even be asked about text holding a NUL. No stored text holds one
            # (writes refuse it), so nothing matches: the answer SQLite gives.
            if _holds_nul(params):
                return []
            raise

    def _one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        rows = self._read(sql, params)
        return rows[0] if rows else None

    def _exec(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """Run a statement inside the current transaction; returns the cursor."""
        cur = self._state().cur
        cur.execute(self._q(sql), params)
        return cur

    def _many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self._state().cur.executemany(self._q(sql), rows)

    # -- events ------------------------------------------------------------------------------
    def _append(self, hive_id: str, items: Sequence[tuple[str, str | None, str | None, JSON]],
                ts: float | None = None, *, want: bool = False) -> list[Event]:
        """Append events inside the current transaction with the next gap-free seqs. On Postgres
        they are sequenced at commit (see `_sequence_and_commit`) unless the caller wants them now."""
        if not items:
            return []
        state = self._state()
        sql = self._sql
        ts = time.time() if ts is None else ts
        if sql.postgres:
            queue = state.deferred.setdefault(hive_id, [])
            queue.extend((ts, kind, agent_id, task_id, data)
                         for kind, agent_id, task_id, data in items)
            if not want:
                return []
            # The caller needs the seqs now: sequence this hive's queue (in call order) at once.
            return self._sequence_hive(state, hive_id, state.deferred.pop(hive_id))[-len(items):]
        cur = state.cur
        cur.execute(sql.bump_seq, (len(items), hive_id))
        row = cur.fetchone()
        if row is None:
            raise NotFound(f"no hive {hive_id!r}")
        first = row[0] - len(items) + 1
        rows = [(hive_id, first + i, ts, kind, agent_id, task_id, _dumps(data))
                for i, (kind, agent_id, task_id, data) in enumerate(items)]
        if len(rows) == 1:
            cur.execute(sql.insert_event, rows[0])
        else:
            cur.executemany(sql.insert_event, rows)
        if not (want or self._listeners):
            return []
        when = _dt_req(ts)
        events = [Event(seq=r[1], hive_id=hive_id, kind=r[3], ts=when, agent_id=r[4],
                        task_id=r[5], data=items[i][3]) for i, r in enumerate(rows)]
        if self._listeners:
            state.pending.extend(events)
        return events

    def _sequence_and_commit(self, state: _ThreadState) -> None:
        """Give the transaction's queued events their seqs as its last statements, and commit.

        Why the sequence stays gap-free and in order: a hive's seqs come from its row's
        counter, bumped in the transaction that inserts the events. The bump takes the row's
        lock, held until commit or rollback: a rollback undoes the bump with the events (no
        gap), and the hive's next appender waits for the lock, so it reads the counter only
        after this transaction is visible (no reader sees seq N+1 before seq N).

        Why it stays cheap: the bumps and the COMMIT go to the server in one pipeline, so the
        lock is held for the server's own work and the commit's WAL flush, never across a
        round trip to this process (whose thread, sharing the GIL with the agents' loops and
        the other store threads, may not run again for a while: every other appender to the
        hive would queue behind it). Hives are bumped in id order, so two multi-hive
        transactions cannot deadlock on their counters.
        """
        deferred, state.deferred = state.deferred, {}
        conn = state.conn.driver_connection
        sent: list[tuple[str, list[_Queued], Any]] = []
        try:
            with conn.pipeline():
                for hive_id in sorted(deferred):
                    cursor = conn.cursor()
                    self._bump(cursor, hive_id, deferred[hive_id])
                    sent.append((hive_id, deferred[hive_id], cursor))
                state.cur.execute("COMMIT")
        except self._integrity as error:
            raise self._unknown_hive(error, sorted(deferred)) from None
        for hive_id, queue, cursor in sent:
            self._sequenced(state, hive_id, queue, [row[0] for row in cursor.fetchall()])

    def _sequence_hive(self, state: _ThreadState, hive_id: str,
                       queue: list[_Queued]) -> list[Event]:
        """Sequence one hive's queued events now, mid-transaction (the caller needs the seqs)."""
        self._bump(state.cur, hive_id, queue)
        return self._sequenced(state, hive_id, queue, [row[0] for row in state.cur.fetchall()])

    def _bump(self, cursor: Any, hive_id: str, queue: list[_Queued]) -> None:
        try:
            cursor.execute(self._sql.sequence_events, {
                "n": len(queue), "hive": hive_id, "ts": [q[0] for q in queue],
                "kind": [q[1] for q in queue], "agent": [q[2] for q in queue],
                "task": [q[3] for q in queue], "data": [_dumps(q[4]) for q in queue]})
        except self._integrity as error:
            raise self._unknown_hive(error, [hive_id]) from None

    @staticmethod
    def _unknown_hive(error: BaseException, hive_ids: Sequence[str]) -> BaseException:
        """A counter bump that found no hive row fails on its NULL seq: say which hive."""
        if getattr(getattr(error, "diag", None), "column_name", None) != "seq":
            return error
        return NotFound(f"no hive {' or '.join(repr(h) for h in hive_ids)}")

    def _sequenced(self, state: _ThreadState, hive_id: str, queue: list[_Queued],
                   seqs: list[int]) -> list[Event]:
        count = len(queue)
        last = max(seqs)
        state.notices.append((hive_id, last))
        events = [Event(seq=last - count + 1 + i, hive_id=hive_id, kind=q[1], ts=_dt_req(q[0]),
                        agent_id=q[2], task_id=q[3], data=q[4]) for i, q in enumerate(queue)]
        if self._listeners:
            state.pending.extend(events)
        return events

    def _notify(self, state: _ThreadState) -> None:
        """Wake LISTENers after the commit, outside it: a NOTIFY inside a transaction takes a
        database-wide lock held through the commit's WAL flush, which would serialise every
        appending transaction of every hive. Here it is a statement of its own that writes no
        WAL, so it costs no flush. If it is lost (the connection dropped right after the
        commit), nothing is: the data is committed and the followers' safety-net poll finds it.

        One notification per hive, `<hive_id>:<newest seq>`, however many events the
        transaction appended: a follower reads everything after its last seq anyway, and every
        worker process of the hive receives each notification."""
        newest: dict[str, int] = {}
        for hive_id, seq in state.notices:
            newest[hive_id] = max(seq, newest.get(hive_id, 0))
        state.notices = []
        payloads = [f"{hive_id}:{seq}" for hive_id, seq in sorted(newest.items())]
        try:
            state.cur.execute(self._sql.notify, (payloads,))
        except self._operational as error:
            log.warning("committed, but the wake-up notification for %s was not sent (%s); "
                        "followers will find the change at their next poll", payloads[-1],
                        opening.pg_cause(error))
            self._drop_state(state)

    def append_event(self, hive_id: str, kind: str, *, agent_id: str | None = None,
                     task_id: str | None = None, data: JSON | None = None) -> Event:
        with self.transaction():
            return self._append(hive_id, [(kind, agent_id, task_id, data or {})], want=True)[0]

    def events(self, hive_id: str, *, after_seq: int = 0, limit: int | None = None,
               kinds: Sequence[str] | None = None) -> list[Event]:
        sql = f"SELECT {EVENT_COLS} FROM events WHERE hive_id = ? AND seq > ?"
        params: list[Any] = [hive_id, after_seq]
        if kinds:
            sql += f" AND kind IN ({', '.join('?' * len(kinds))})"
            params += list(kinds)
        sql += " ORDER BY seq"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [_event(row) for row in self._read(sql, params)]

    def last_seq(self, hive_id: str) -> int:
        row = self._one(self._sql.last_seq, (hive_id,))
        if row is None:
            raise NotFound(f"no hive {hive_id!r}")
        return int(row[0])

    # -- hives and agents ------------------------------------------------------------------------
    def create_hive(self, hive: Hive, agents: Sequence[Agent] = (),
                    tasks: Sequence[Task] = ()) -> Hive:
        _refuse_nul("hive", {"id": hive.id, "name": hive.name, "objective": hive.objective,
                             "workspace": hive.workspace, "owner": hive.owner,
                             "pause_reason": hive.pause_reason})
        with self.transaction():
            self._exec(
                "INSERT INTO hives (id, name, mode, objective, status, pause_reason, "
                "budget_tokens, budget_cost, workspace, config, owner, created_at, updated_at, "
                "last_seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0)",
                (hive.id, hive.name, str(hive.mode), hive.objective, str(hive.status),
                 hive.pause_reason, hive.budget.max_tokens, hive.budget.max_cost,
                 hive.workspace, _dumps(hive.config), hive.owner, _epoch(hive.created_at),
                 _epoch(hive.updated_at)))
            self._append(hive.id, [("hive_created", None, None,
                                    {"name": hive.name, "mode": str(hive.mode),
                                     "objective": hive.objective})])
            self._insert_agents(hive.id, agents)
            if tasks:
                self._insert_tasks(hive.id, tasks, None)
        return hive

    def get_hive(self, hive_id: str) -> Hive:
        row = self._one(f"SELECT {HIVE_COLS} FROM hives WHERE id = ?", (hive_id,))
        if row is None:
            raise NotFound(f"no hive {hive_id!r}")
        return _hive(row)

    def list_hives(self, *, owner: str | None = None, limit: int = 100,
                   offset: int = 0) -> list[Hive]:
        where, params = ("WHERE owner = ?", [owner]) if owner is not None else ("", [])
        rows = self._read(f"SELECT {HIVE_COLS} FROM hives {where} ORDER BY created_at DESC, id "
                          "LIMIT ? OFFSET ?", [*params, limit, offset])
        return [_hive(row) for row in rows]

    def set_hive_status(self, hive_id: str, status: HiveStatus, *,
                        reason: str | None = None) -> Hive:
        status = HiveStatus(status)
        _refuse_nul("hive", {"pause reason": reason})
        with self.transaction():
            hive: Hive = self._update_row("hives", "hive", HIVE_COLS, _hive, hive_id,
                                          {"status": status, "pause_reason": reason})
            self._append(hive_id, [(f"hive_{status}", None, None, {"reason": reason})])
        return hive

    def update_hive(self, hive_id: str, **fields: Any) -> Hive:
        with self.transaction():
            hive: Hive = self._update_row("hives", "hive", HIVE_COLS, _hive, hive_id, fields)
        return hive

    def _update_row(self, table: str, kind: str, cols: str, build: Callable[[Any], Any],
                    row_id: str, fields: dict[str, Any], *, touch: bool = True) -> Any:
        spec = {"hives": _HIVE_FIELDS, "agents": _AGENT_FIELDS, "tasks": _TASK_FIELDS,
                "conversations": _CONVERSATION_FIELDS, "messages": _MESSAGE_FIELDS}[table]
        columns, values = _assignments(kind, spec, fields)
        if touch and table != "agents" and "updated_at" not in fields:
            columns.append("updated_at = ?")
            values.append(time.time())
        if not columns:
            row = self._one(f"SELECT {cols} FROM {table} WHERE id = ?", (row_id,))
        else:
            cur = self._exec(f"UPDATE {table} SET {', '.join(columns)} WHERE id = ? "
                             f"RETURNING {cols}", [*values, row_id])
            row = cur.fetchone()
        if row is None:
            raise NotFound(f"no {kind} {row_id!r}")
        return build(row)

    def _insert_agents(self, hive_id: str, agents: Sequence[Agent]) -> None:
        if not agents:
            return
        for agent in agents:
            _refuse_nul("agent", {"id": agent.id, "name": agent.name, "role": agent.role,
                                  "title": agent.title, "capabilities": agent.capabilities,
                                  "skills": agent.skills, "model": agent.model,
                                  "reports_to": agent.reports_to, "worker_id": agent.worker_id})
        base = time.time_ns() // 1000
        self._many(f"INSERT INTO agents ({AGENT_COLS}, ord) VALUES ({', '.join('?' * 21)})",
                   [_agent_params(agent, hive_id, base + i) for i, agent in enumerate(agents)])
        self._append(hive_id, [("agent_added", agent.id, None,
                                {"name": agent.name, "role": agent.role})
                               for agent in agents])

    def add_agent(self, agent: Agent) -> Agent:
        with self.transaction():
            self._insert_agents(agent.hive_id, [agent])
        return agent

    def get_agent(self, agent_id: str) -> Agent:
        row = self._one(f"SELECT {AGENT_COLS} FROM agents WHERE id = ?", (agent_id,))
        if row is None:
            raise NotFound(f"no agent {agent_id!r}")
        return _agent(row)

    def list_agents(self, hive_id: str) -> list[Agent]:
        return [_agent(row) for row in self._read(
            f"SELECT {AGENT_COLS} FROM agents WHERE hive_id = ? ORDER BY ord, id", (hive_id,))]

    def update_agent(self, agent_id: str, **fields: Any) -> Agent:
        with self.transaction():
            return self._update_row("agents", "agent", AGENT_COLS, _agent, agent_id, fields)  # type: ignore[no-any-return]

    # -- the board -------------------------------------------------------------------------------
    def _insert_tasks(self, hive_id: str, tasks: Sequence[Task],
                      agent_id: str | None) -> list[Task]:
        for task in tasks:
            # One look over the task's text first: boards are posted by the thousand.
            if "\x00" in "".join((task.id, task.title, task.description, task.parent_id or "",
                                   task.verify or "", task.result or "", task.assignee or "",
                                   task.blocked_on or "", *task.skills, *task.depends_on)):
                _refuse_nul("task", {"id": task.id, "title": task.title,
                                     "description": task.description,
                                     "parent_id": task.parent_id, "skills": task.skills,
                                     "depends_on": task.depends_on, "verify": task.verify,
                                     "result": task.result, "assignee": task.assignee,
                                     "blocked_on": task.blocked_on})
        batch = {task.id for task in tasks}
        cycle = find_cycle({task.id: [dep for dep in task.depends_on if dep in batch]
                            for task in tasks})
        if cycle:
            titles = {task.id: task.title for task in tasks}
            raise PolicyError("tasks would wait for each other forever: dependency cycle "
                              + " → ".join(repr(titles[task_id]) for task_id in cycle)
                              + "; nothing was posted")
        wanted = sorted({dep for task in tasks for dep in task.depends_on} - batch)
        known: dict[str, str] = {}
        for chunk in iter_batches(wanted, 500):
            for dep_id, state in self._read(
                    f"SELECT id, state FROM tasks WHERE hive_id = ? AND id IN "
                    f"({', '.join('?' * len(chunk))})", [hive_id, *chunk]):
                known[dep_id] = state
        missing = [dep for dep in wanted if dep not in known]
        if missing:
            raise PolicyError(f"tasks depend on unknown tasks {', '.join(missing[:5])} in hive "
                              f"{hive_id}; nothing was posted")
        base = time.time_ns() // 1000
        now = time.time()
        stored: list[Task] = []
        rows: list[tuple[Any, ...]] = []
        deps: list[tuple[str, str]] = []
        for i, task in enumerate(tasks):
            if task.hive_id != hive_id:
                task = replace(task, hive_id=hive_id)
            unique_deps = tuple(dict.fromkeys(task.depends_on))
            pending = sum(1 for dep in unique_deps if known.get(dep) != "done")
            rows.append((task.id, hive_id, task.title, task.description, task.parent_id,
                         _dumps(list(task.skills)), task.priority, task.effort,
                         _dumps(list(unique_deps)), str(task.state), task.assignee,
                         _epoch(task.lease_until), task.attempts, task.stimulus, task.verify,
                         task.result, task.verified, task.blocked_on, task.depth,
                         _epoch(task.created_at) or now, _epoch(task.updated_at) or now,
                         _epoch(task.claimed_at), _epoch(task.finished_at), pending, base + i))
            deps += [(task.id, dep) for dep in unique_deps]
            stored.append(task)
        self._many(f"INSERT INTO tasks ({TASK_COLS}, pending_deps, ord) "
                   f"VALUES ({', '.join('?' * 25)})", rows)
        self._many("INSERT INTO task_deps (task_id, depends_on) VALUES (?, ?)", deps)
        self._append(hive_id, [("task_posted", agent_id, task.id,
                                {"title": task.title, "priority": task.priority,
                                 "parent_id": task.parent_id,
                                 "depends_on": list(task.depends_on)})
                               for task in stored])
        return stored

    def post_tasks(self, hive_id: str, tasks: Sequence[Task], *,
                   agent_id: str | None = None) -> list[Task]:
        with self.transaction():
            return self._insert_tasks(hive_id, tasks, agent_id)

    def get_task(self, task_id: str) -> Task:
        row = self._one(f"SELECT {TASK_COLS} FROM tasks WHERE id = ?", (task_id,))
        if row is None:
            raise NotFound(f"no task {task_id!r}")
        return _task(row)

    def list_tasks(self, hive_id: str, *, states: Sequence[TaskState] | None = None,
                   assignee: str | None = None, limit: int | None = None,
                   offset: int = 0) -> list[Task]:
        sql = f"SELECT {TASK_COLS} FROM tasks WHERE hive_id = ?"
        params: list[Any] = [hive_id]
        if states:
            sql += f" AND state IN ({', '.join('?' * len(states))})"
            params += [str(state) for state in states]
        if assignee is not None:
            sql += " AND assignee = ?"
            params.append(assignee)
        sql += " ORDER BY ord, id"
        if limit is not None or offset:
            sql += " LIMIT ? OFFSET ?"
            params += [limit if limit is not None else 2**62, offset]
        return [_task(row) for row in self._read(sql, params)]

    def list_task_rows(self, hive_id: str, *, states: Sequence[TaskState] | None = None,
                       limit: int, offset: int = 0) -> list[Sequence[Any]]:
        """`list_tasks` as raw rows, one value per name of TASK_FIELDS (timestamps as epoch
        seconds, lists as JSON text): a page of the board can go to JSON without building a
        Task and four datetimes per row."""
        sql = f"SELECT {TASK_COLS} FROM tasks WHERE hive_id = ?"
        params: list[Any] = [hive_id]
        if states:
            sql += f" AND state IN ({', '.join('?' * len(states))})"
            params += [str(state) for state in states]
        return self._read(sql + " ORDER BY ord, id LIMIT ? OFFSET ?", [*params, limit, offset])

    def count_tasks(self, hive_id: str) -> dict[TaskState, int]:
        counts = dict.fromkeys(TaskState, 0)
        for state, count in self._read(
                "SELECT state, COUNT(*) FROM tasks WHERE hive_id = ? GROUP BY state", (hive_id,)):
            counts[TaskState(state)] = int(count)
        return counts

    def claim_task(self, hive_id: str, agent_id: str, *, lease_seconds: float,
                   task_id: str | None = None, alternatives: Sequence[str] = (),
                   now: datetime | None = None) -> Task | None:
        at = time.time() if now is None else _epoch(now)
        assert at is not None
        lease = at + lease_seconds
        if task_id is None and alternatives:
            raise ValueError("alternatives go with a task_id")
        with self.transaction():
            cur = self._state().cur
            if task_id is None:
                cur.execute(self._sql.claim_next, (agent_id, lease, at, at, hive_id))
                row = cur.fetchone()
            elif alternatives and self._sql.postgres:
                wanted = [task_id, *alternatives]
                cur.execute(self._sql.claim_first, (agent_id, lease, at, at, wanted, hive_id,
                                                    wanted))
                row = cur.fetchone()
            else:
                for candidate in (task_id, *alternatives):
                    cur.execute(self._sql.claim_one, (agent_id, lease, at, at, candidate,
                                                      hive_id))
                    row = cur.fetchone()
                    if row is not None:
                        break
            if row is None:
                return None
            task = _task(row)
            self._append(hive_id, [("task_claimed", agent_id, task.id,
                                    {"lease_until": lease, "attempt": task.attempts})], at)
        return task

    def renew_lease(self, task_id: str, agent_id: str, *, lease_seconds: float,
                    now: datetime | None = None) -> bool:
        at = time.time() if now is None else _epoch(now)
        assert at is not None
        with self.transaction():
            cur = self._exec("UPDATE tasks SET lease_until = ? WHERE id = ? AND "
                             "state = 'claimed' AND assignee = ?",
                             (at + lease_seconds, task_id, agent_id))
            return bool(cur.rowcount == 1)

    def finish_task(self, task_id: str, agent_id: str | None, *, state: TaskState,
                    result: str | None = None, verified: bool | None = None,
                    data: JSON | None = None) -> Task:
        state = TaskState(state)
        if not state.terminal:
            raise ValueError(f"finish_task needs done, failed or cancelled, not {state}")
        if agent_id is None and state is not TaskState.CANCELLED:
            raise ValueError("only cancelling works without the agent holding the claim")
        _refuse_nul("task", {"result": result})
        now = time.time()
        with self.transaction():
            sets = ("UPDATE tasks SET state = ?, result = COALESCE(?, result), "
                    "verified = COALESCE(?, verified), finished_at = ?, updated_at = ?, "
                    "lease_until = NULL WHERE id = ? AND ")
            params: list[Any] = [str(state), result, verified, now, now, task_id]
            if agent_id is None:
                sets += "state NOT IN ('done', 'failed', 'cancelled')"
            else:
                sets += "state = 'claimed' AND assignee = ?"
                params.append(agent_id)
            cur = self._exec(f"{sets} RETURNING {TASK_COLS}", params)
            row = cur.fetchone()
            if row is None:
                current = self.get_task(task_id)
                holder = current.assignee or "nobody"
                raise Conflict(f"task {task_id} is {current.state} (held by {holder}), so "
                               f"{agent_id or 'ruflo'} cannot finish it; nothing was changed")
            task = _task(row)
            if state is TaskState.DONE:
                self._exec("UPDATE tasks SET pending_deps = pending_deps - 1 WHERE id IN "
                           "(SELECT task_id FROM task_deps WHERE depends_on = ?)", (task_id,))
            event: JSON = {"verified": verified}
            if result is not None:
                event["result"] = result[:500]
            if data:
                event.update(data)
            self._append(task.hive_id, [(f"task_{state}", agent_id, task_id, event)], now)
        return task

    def release_task(self, task_id: str, agent_id: str, *, reason: str) -> Task:
        with self.transaction():
            cur = self._exec(f"UPDATE tasks SET state = 'open', assignee = NULL, "
                             f"lease_until = NULL, updated_at = ? WHERE id = ? AND "
                             f"state = 'claimed' AND assignee = ? RETURNING {TASK_COLS}",
                             (time.time(), task_id, agent_id))
            row = cur.fetchone()
            if row is None:
                current = self.get_task(task_id)
                raise Conflict(f"task {task_id} is {current.state} and not held by {agent_id}; "
                               "nothing was changed")
            task = _task(row)
            self._append(task.hive_id, [("task_released", agent_id, task_id,
                                         {"reason": reason})])
        return task

    def update_task(self, task_id: str, **fields: Any) -> Task:
        with self.transaction():
            before = self.get_task(task_id) if "state" in fields else None
            task: Task = self._update_row("tasks", "task", TASK_COLS, _task, task_id, fields)
            if before is not None and (before.state is TaskState.DONE) != (
                    task.state is TaskState.DONE):
                step = -1 if task.state is TaskState.DONE else 1
                self._exec("UPDATE tasks SET pending_deps = pending_deps + ? WHERE id IN "
                           "(SELECT task_id FROM task_deps WHERE depends_on = ?)",
                           (step, task_id))
            shown = {k: (str(v) if isinstance(v, datetime | TaskState) else v)
                     for k, v in fields.items()
                     if isinstance(v, str | int | float | bool | TaskState | datetime) or v is None}
            self._append(task.hive_id, [("task_updated", None, task_id, {"fields": shown})])
        return task

    def expire_leases(self, *, hive_id: str | None = None,
                      now: datetime | None = None) -> list[Task]:
        at = time.time() if now is None else _epoch(now)
        with self.transaction():
            hive_clause = "AND hive_id = ?" if hive_id else ""
            params: list[Any] = [at] + ([hive_id] if hive_id else [])
            rows = self._exec(self._sql.expiring.replace("{hive}", hive_clause),
                              params).fetchall()
            if not rows:
                return []
            holders = dict(rows)
            expired: list[Task] = []
            for chunk in iter_batches(list(holders), 500):
                cur = self._exec(
                    f"UPDATE tasks SET state = 'open', assignee = NULL, lease_until = NULL, "
                    f"updated_at = ? WHERE state = 'claimed' AND lease_until < ? AND id IN "
                    f"({', '.join('?' * len(chunk))}) RETURNING {TASK_COLS}",
                    [at, at, *chunk])
                expired += [_task(row) for row in cur.fetchall()]
            by_hive: dict[str, list[Task]] = {}
            for task in expired:
                by_hive.setdefault(task.hive_id, []).append(task)
            for hive, tasks in by_hive.items():
                self._append(hive, [("lease_expired", holders[task.id], task.id,
                                     {"agent_id": holders[task.id]}) for task in tasks], at)
        return expired

    def next_lease_expiry(self, hive_id: str | None = None) -> datetime | None:
        if hive_id is None:
            row = self._one("SELECT MIN(lease_until) FROM tasks WHERE state = 'claimed'")
        else:
            row = self._one("SELECT MIN(lease_until) FROM tasks WHERE state = 'claimed' AND "
                            "hive_id = ?", (hive_id,))
        return _dt(row[0]) if row else None

    # -- ledger and approvals ----------------------------------------------------------------------
    def add_ledger_entry(self, *, model: str, prompt_tokens: int, completion_tokens: int,
                         cost: float | None, cost_source: str, kind: CostKind = CostKind.WORK,
                         hive_id: str | None = None, agent_id: str | None = None,
                         task_id: str | None = None, request_id: str | None = None,
                         ts: datetime | None = None) -> LedgerEntry:
        at = time.time() if ts is None else _epoch(ts)
        with self.transaction():
            cur = self._exec(
                "INSERT INTO ledger (ts, model, prompt_tokens, completion_tokens, cost, "
                "cost_source, kind, hive_id, agent_id, task_id, request_id) VALUES "
                f"(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING {LEDGER_COLS}",
                (at, model, prompt_tokens, completion_tokens, cost, cost_source, str(kind),
                 hive_id, agent_id, task_id, request_id))
            entry = _ledger(cur.fetchone())
            if agent_id is not None:
                self._exec("UPDATE agents SET spent_tokens = spent_tokens + ?, "
                           "spent_cost = spent_cost + ? WHERE id = ?",
                           (prompt_tokens + completion_tokens, cost or 0.0, agent_id))
            # The running totals budgets read; hive first, then agent, in every transaction,
            # so two writers never wait on each other's rows in opposite orders.
            for scope, scope_id in (("hive", hive_id), ("agent", agent_id)):
                if scope_id is not None:
                    self._exec(
                        "INSERT INTO spend_totals (scope, scope_id, tokens, cost, calls, "
                        "unknown_cost_calls) VALUES (?, ?, ?, ?, 1, ?) "
                        "ON CONFLICT (scope, scope_id) DO UPDATE SET "
                        "tokens = spend_totals.tokens + excluded.tokens, "
                        "cost = spend_totals.cost + excluded.cost, "
                        "calls = spend_totals.calls + 1, "
                        "unknown_cost_calls = spend_totals.unknown_cost_calls "
                        "+ excluded.unknown_cost_calls",
                        (scope, scope_id, prompt_tokens + completion_tokens, cost or 0.0,
                         int(cost is None)))
        return entry

    @staticmethod
    def _scope(hive_id: str | None, agent_id: str | None,
               kind: CostKind | None = None) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        for column, value in (("hive_id", hive_id), ("agent_id", agent_id),
                              ("kind", None if kind is None else str(kind))):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), params

    def ledger(self, *, hive_id: str | None = None, agent_id: str | None = None,
               limit: int | None = None) -> list[LedgerEntry]:
        where, params = self._scope(hive_id, agent_id)
        sql = f"SELECT {LEDGER_COLS} FROM ledger{where} ORDER BY id"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [_ledger(row) for row in self._read(sql, params)]

    def spend(self, *, hive_id: str | None = None, agent_id: str | None = None,
              kind: CostKind | None = None) -> Spend:
        if kind is None and (hive_id is None) != (agent_id is None):
            # One hive's or one agent's whole spend (what budgets check before every call):
            # its running total, one row, however long its ledger.
            scope, scope_id = ("hive", hive_id) if hive_id is not None else ("agent", agent_id)
            total = self._one("SELECT tokens, cost, calls, unknown_cost_calls FROM spend_totals "
                              "WHERE scope = ? AND scope_id = ?", (scope, scope_id))
            if total is None:
                return Spend()
            return Spend(tokens=int(total[0]), cost=float(total[1]), calls=int(total[2]),
                         unknown_cost_calls=int(total[3]))
        where, params = self._scope(hive_id, agent_id, kind)
        row = self._one("SELECT COALESCE(SUM(prompt_tokens + completion_tokens), 0), "
                        "COALESCE(SUM(cost), 0), COUNT(*), "
                        f"COALESCE(SUM(CASE WHEN cost IS NULL THEN 1 ELSE 0 END), 0) FROM ledger"
                        f"{where}", params)
        return Spend(tokens=int(row[0]), cost=float(row[1]), calls=int(row[2]),
                     unknown_cost_calls=int(row[3]))

    def create_approval(self, approval: Approval) -> Approval:
        _refuse_nul("approval", {"subject": approval.subject, "agent_id": approval.agent_id})
        with self.transaction():
            self._exec(f"INSERT INTO approvals ({APPROVAL_COLS}) VALUES "
                       f"(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (approval.id, approval.hive_id, str(approval.kind), approval.subject,
                        str(approval.status), approval.agent_id, _dumps(approval.data),
                        approval.decided_by, _epoch(approval.created_at),
                        _epoch(approval.decided_at)))
            self._append(approval.hive_id, [("approval_requested", approval.agent_id, None,
                                             {"approval_id": approval.id,
                                              "kind": str(approval.kind),
                                              "subject": approval.subject})])
        return approval

    def decide_approval(self, approval_id: str, status: ApprovalStatus, *,
                        decided_by: str) -> Approval:
        status = ApprovalStatus(status)
        if status is ApprovalStatus.PENDING:
            raise ValueError("a decision must approve, reject or cancel")
        _refuse_nul("approval", {"decided_by": decided_by})
        with self.transaction():
            cur = self._exec(f"UPDATE approvals SET status = ?, decided_by = ?, decided_at = ? "
                             f"WHERE id = ? AND status = 'pending' RETURNING {APPROVAL_COLS}",
                             (str(status), decided_by, time.time(), approval_id))
            row = cur.fetchone()
            if row is None:
                current = self.get_approval(approval_id)
                raise Conflict(f"approval {approval_id} was already {current.status} by "
                               f"{current.decided_by}; nothing was changed")
            approval = _approval(row)
            self._append(approval.hive_id, [("approval_decided", approval.agent_id, None,
                                             {"approval_id": approval_id,
                                              "status": str(status),
                                              "decided_by": decided_by})])
        return approval

    def get_approval(self, approval_id: str) -> Approval:
        row = self._one(f"SELECT {APPROVAL_COLS} FROM approvals WHERE id = ?", (approval_id,))
        if row is None:
            raise NotFound(f"no approval {approval_id!r}")
        return _approval(row)

    def list_approvals(self, *, hive_id: str | None = None,
                       status: ApprovalStatus | None = None) -> list[Approval]:
        clauses, params = [], []
        if hive_id is not None:
            clauses.append("hive_id = ?")
            params.append(hive_id)
        if status is not None:
            clauses.append("status = ?")
            params.append(str(status))
        where = " WHERE " + " AND ".join(clauses) if clauses else ""
        return [_approval(row) for row in self._read(
            f"SELECT {APPROVAL_COLS} FROM approvals{where} ORDER BY created_at, id", params)]

    # -- chat ----------------------------------------------------------------------------------
    def _insert_messages(self, messages: Sequence[Message], first_ord: int,
                         conversation_id: str) -> None:
        for message in messages:
            _refuse_nul("message", {"content": message.content, "role": message.role,
                                    "id": message.id, "parent_id": message.parent_id})
        self._many(f"INSERT INTO messages ({MESSAGE_COLS}, ord) VALUES "
                   f"(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   [(m.id, conversation_id, m.role, m.content, m.parent_id, m.interrupted,
                     _dumps(m.data), _epoch(m.created_at), _epoch(m.updated_at), first_ord + i)
                    for i, m in enumerate(messages)])

    def create_conversation(self, conversation: Conversation,
                            messages: Sequence[Message] = ()) -> Conversation:
        _refuse_nul("conversation", {"id": conversation.id, "user_id": conversation.user_id,
                                     "title": conversation.title, "model": conversation.model,
                                     "preprompt": conversation.preprompt})
        with self.transaction():
            self._exec(f"INSERT INTO conversations ({CONVERSATION_COLS}) VALUES "
                       f"(?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (conversation.id, conversation.user_id, conversation.title,
                        conversation.model, conversation.preprompt,
                        conversation.root_message_id, _dumps(conversation.data),
                        _epoch(conversation.created_at), _epoch(conversation.updated_at)))
            self._insert_messages(messages, 0, conversation.id)
        return conversation

    def get_conversation(self, conversation_id: str, *,
                         user_id: str | None = None) -> Conversation:
        row = self._one(f"SELECT {CONVERSATION_COLS} FROM conversations WHERE id = ?",
                        (conversation_id,))
        if row is None or (user_id is not None and row[1] != user_id):
            raise NotFound(f"no conversation {conversation_id!r}")
        return _conversation(row)

    def list_conversations(self, user_id: str, *, limit: int = 50,
                           offset: int = 0) -> list[Conversation]:
        return [_conversation(row) for row in self._read(
            f"SELECT {CONVERSATION_COLS} FROM conversations WHERE user_id = ? "
            "ORDER BY updated_at DESC, id DESC LIMIT ? OFFSET ?", (user_id, limit, offset))]

    def count_conversations(self, user_id: str | None = None) -> int:
        if user_id is None:
            row = self._one("SELECT COUNT(*) FROM conversations")
        else:
            row = self._one("SELECT COUNT(*) FROM conversations WHERE user_id = ?", (user_id,))
        return int(row[0])

    def update_conversation(self, conversation_id: str, **fields: Any) -> Conversation:
        with self.transaction():
            return self._update_row("conversations", "conversation", CONVERSATION_COLS,  # type: ignore[no-any-return]
                                    _conversation, conversation_id, fields)

    def delete_conversation(self, conversation_id: str, *, user_id: str | None = None) -> None:
        with self.transaction():
            sql, params = "DELETE FROM conversations WHERE id = ?", [conversation_id]
            if user_id is not None:
                sql += " AND user_id = ?"
                params.append(user_id)
            if self._exec(sql, params).rowcount != 1:
                raise NotFound(f"no conversation {conversation_id!r}")

    def delete_conversations(self, user_id: str) -> int:
        with self.transaction():
            return int(self._exec("DELETE FROM conversations WHERE user_id = ?",
                                  (user_id,)).rowcount)

    def add_message(self, message: Message) -> Message:
        _refuse_nul("message", {"content": message.content, "role": message.role,
                                "id": message.id, "parent_id": message.parent_id})
        with self.transaction():
            touched = self._exec("UPDATE conversations SET updated_at = ? WHERE id = ?",
                                 (time.time(), message.conversation_id)).rowcount
            if touched != 1:
                raise NotFound(f"no conversation {message.conversation_id!r}")
            self._exec(f"INSERT INTO messages ({MESSAGE_COLS}, ord) VALUES "
                       "(?, ?, ?, ?, ?, ?, ?, ?, ?, (SELECT COALESCE(MAX(ord), -1) + 1 FROM "
                       "messages WHERE conversation_id = ?))",
                       (message.id, message.conversation_id, message.role, message.content,
                        message.parent_id, message.interrupted, _dumps(message.data),
                        _epoch(message.created_at), _epoch(message.updated_at),
                        message.conversation_id))
        return message

    def update_message(self, message_id: str, **fields: Any) -> Message:
        with self.transaction():
            return self._update_row("messages", "message", MESSAGE_COLS, _message,  # type: ignore[no-any-return]
                                    message_id, fields)

    def messages(self, conversation_id: str) -> list[Message]:
        return [_message(row) for row in self._read(
            f"SELECT {MESSAGE_COLS} FROM messages WHERE conversation_id = ? ORDER BY ord",
            (conversation_id,))]

    def user_ids(self) -> list[str]:
        return [row[0] for row in self._read(
            "SELECT id FROM users UNION SELECT user_id FROM conversations "
            "UNION SELECT user_id FROM user_settings ORDER BY 1")]

    # users (additive: the RVF users collection keeps its documents here)
    def put_user(self, user_id: str, data: JSON) -> None:
        _refuse_nul("user", {"id": user_id})
        now = time.time()
        with self.transaction():
            self._exec("INSERT INTO users (id, data, created_at, updated_at) VALUES (?, ?, ?, ?) "
                       "ON CONFLICT (id) DO UPDATE SET data = excluded.data, "
                       "updated_at = excluded.updated_at", (user_id, _dumps(data), now, now))

    def get_user(self, user_id: str) -> JSON:
        row = self._one("SELECT data FROM users WHERE id = ?", (user_id,))
        if row is None:
            raise NotFound(f"no user {user_id!r}")
        return _loads(row[0])  # type: ignore[no-any-return]

    def list_users(self) -> list[tuple[str, JSON]]:
        return [(row[0], _loads(row[1]))
                for row in self._read("SELECT id, data FROM users ORDER BY id")]

    def get_user_settings(self, user_id: str) -> JSON:
        row = self._one("SELECT data FROM user_settings WHERE user_id = ?", (user_id,))
        return {} if row is None else dict(_loads(row[0]))

    def put_user_settings(self, user_id: str, settings: JSON) -> JSON:
        with self.transaction():
            self._exec("INSERT INTO user_settings (user_id, data, updated_at) VALUES (?, ?, ?) "
                       "ON CONFLICT (user_id) DO UPDATE SET data = excluded.data, "
                       "updated_at = excluded.updated_at",
                       (user_id, _dumps(settings), time.time()))
        return settings

    # -- auth tokens -----------------------------------------------------------------------------
    def create_token(self, *, token_id: str, name: str, user_id: str, token_hash: str,
                     scopes: Sequence[str] = ()) -> JSON:
        _refuse_nul("token", {"name": name, "user_id": user_id})
        with self.transaction():
            cur = self._exec("INSERT INTO tokens (id, name, user_id, token_hash, created_at, "
                             f"scopes) VALUES (?, ?, ?, ?, ?, ?) RETURNING {TOKEN_COLS}",
                             (token_id, name, user_id, token_hash, time.time(),
                              _dumps(sorted(set(scopes)))))
            return _token(cur.fetchone())

    def find_token(self, token_hash: str) -> JSON | None:
        row = self._one(f"SELECT {TOKEN_COLS} FROM tokens WHERE token_hash = ? AND "
                        "revoked_at IS NULL", (token_hash,))
        return None if row is None else _token(row)

    def list_tokens(self) -> list[JSON]:
        return [_token(row) for row in self._read(
            f"SELECT {TOKEN_COLS} FROM tokens ORDER BY created_at")]

    def revoke_token(self, token_id: str) -> None:
        with self.transaction():
            cur = self._exec("UPDATE tokens SET revoked_at = COALESCE(revoked_at, ?) "
                             "WHERE id = ?", (time.time(), token_id))
            if cur.rowcount != 1:
                raise NotFound(f"no token {token_id!r}")

    # -- memory --------------------------------------------------------------------------------
    def memory_put(self, entry: MemoryEntry) -> MemoryEntry:
        _refuse_nul("note", {"namespace": entry.namespace, "key": entry.key,
                             "content": entry.content, "tags": entry.tags})
        with self.transaction():
            cur = self._exec(
                "INSERT INTO memory (namespace, key, content, tags, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (namespace, key) DO UPDATE SET "
                "content = excluded.content, tags = excluded.tags, "
                f"updated_at = excluded.updated_at RETURNING {MEMORY_COLS}",
                (entry.namespace, entry.key, entry.content, _dumps(list(entry.tags)),
                 _epoch(entry.created_at), _epoch(entry.updated_at)))
            return _memory(cur.fetchone())

    def memory_get(self, namespace: str, key: str) -> MemoryEntry:
        row = self._one(f"SELECT {MEMORY_COLS} FROM memory WHERE namespace = ? AND key = ?",
                        (namespace, key))
        if row is None:
            raise NotFound(f"no memory note {namespace}/{key}")
        return _memory(row)

    def memory_list(self, namespace: str | None = None, *,
                    limit: int | None = None) -> list[MemoryEntry]:
        sql, params = f"SELECT {MEMORY_COLS} FROM memory", list[Any]()
        if namespace is not None:
            sql += " WHERE namespace = ?"
            params.append(namespace)
        sql += " ORDER BY namespace, key"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [_memory(row) for row in self._read(sql, params)]

    def memory_delete(self, namespace: str, key: str) -> bool:
        with self.transaction():
            return bool(self._exec("DELETE FROM memory WHERE namespace = ? AND key = ?",
                                   (namespace, key)).rowcount)

    def memory_search(self, query: str, *, namespace: str | None = None,
                      limit: int = 10) -> list[MemoryEntry]:
        # Only words reach the search engine: punctuation in a person's query can never become
        # FTS5 or tsquery syntax. Any word may match (OR); the ranking rewards notes matching more.
        words = list(dict.fromkeys(w.lower() for w in _WORD.findall(query)))[:_MAX_SEARCH_WORDS]
        if not words or limit <= 0:
            return []
        cols = ", ".join(f"m.{c.strip()}" for c in MEMORY_COLS.split(","))
        params: list[Any]
        if self._sql.postgres:
            tsquery = " || ".join(["plainto_tsquery('english', ?)"] * len(words))
            sql = (f"SELECT {cols}, ts_rank(m.tsv, q.query) AS rank FROM memory m, "
                   f"(SELECT {tsquery} AS query) q WHERE m.tsv @@ q.query")
            params = list(words)
            if namespace is not None:
                sql += " AND m.namespace = ?"
                params.append(namespace)
            sql += " ORDER BY rank DESC, m.updated_at DESC LIMIT ?"
            params.append(limit)
            return [_memory(row[:6], float(row[6])) for row in self._read(sql, params)]
        match = " OR ".join('"' + word.replace('"', '""') + '"' for word in words)
        sql = (f"SELECT {cols}, bm25(memory_fts, 3.0, 1.0, 2.0) AS rank FROM memory_fts "
               "JOIN memory m ON m.id = memory_fts.rowid WHERE memory_fts MATCH ?")
        params = [match]
        if namespace is not None:
            sql += " AND m.namespace = ?"
            params.append(namespace)
        sql += " ORDER BY rank, m.updated_at DESC LIMIT ?"
        params.append(limit)
        return [_memory(row[:6], -float(row[6])) for row in self._read(sql, params)]

    # -- workers ---------------------------------------------------------------------------------
    def register_worker(self, worker_id: str, *, hive_id: str | None, host: str,
                        agents: int, now: datetime | None = None) -> None:
        at = time.time() if now is None else _epoch(now)
        with self.transaction():
            self._exec("INSERT INTO workers (id, hive_id, host, agents, started_at, "
                       "heartbeat_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
                       "hive_id = excluded.hive_id, host = excluded.host, "
                       "agents = excluded.agents, heartbeat_at = excluded.heartbeat_at",
                       (worker_id, hive_id, host, agents, at, at))

    def worker_heartbeat(self, worker_id: str, *, now: datetime | None = None) -> None:
        at = time.time() if now is None else _epoch(now)
        with self.transaction():
            if self._exec("UPDATE workers SET heartbeat_at = ? WHERE id = ?",
                          (at, worker_id)).rowcount != 1:
                raise NotFound(f"no worker {worker_id!r} (it was unregistered)")

    def unregister_worker(self, worker_id: str) -> None:
        with self.transaction():
            self._exec("DELETE FROM workers WHERE id = ?", (worker_id,))

    def list_workers(self, hive_id: str | None = None) -> list[JSON]:
        sql, params = "SELECT id, hive_id, host, agents, started_at, heartbeat_at FROM workers", []
        if hive_id is not None:
            sql += " WHERE hive_id = ?"
            params.append(hive_id)
        return [{"id": r[0], "hive_id": r[1], "host": r[2], "agents": r[3],
                 "started_at": _dt_req(r[4]), "heartbeat_at": _dt_req(r[5])}
                for r in self._read(sql + " ORDER BY id", params)]

    # -- hive drivers ----------------------------------------------------------------------------
    def take_hive(self, driver: HiveDriver, *, lease_seconds: float,
                  now: datetime | None = None) -> HiveDriver:
        at = time.time() if now is None else _epoch(now)
        assert at is not None
        with self.transaction():
            # One upsert on both databases: the row's lock (Postgres) or the write lock
            # (SQLite) makes the look at the current driver and the take one step.
            taken = self._exec(
                "INSERT INTO hive_drivers (hive_id, instance, host, pid, driving_since, "
                "driver_until) SELECT id, ?, ?, ?, ?, ? FROM hives WHERE id = ? "
                "ON CONFLICT (hive_id) DO UPDATE SET instance = excluded.instance, "
                "host = excluded.host, pid = excluded.pid, driving_since = CASE WHEN "
                "hive_drivers.instance = excluded.instance THEN hive_drivers.driving_since "
                "ELSE excluded.driving_since END, driver_until = excluded.driver_until "
                "WHERE hive_drivers.instance = excluded.instance OR hive_drivers.driver_until <= ? "
                f"RETURNING {DRIVER_COLS}",
                (driver.instance, driver.host, driver.pid, at, at + lease_seconds,
                 driver.hive_id, at)).fetchone()
            if taken is not None:
                return _driver(taken)
            current = self.hive_driver(driver.hive_id)
        if current is None:
            raise NotFound(f"no hive {driver.hive_id!r}")
        return current

    def release_hive(self, hive_id: str, instance: str) -> bool:
        with self.transaction():
            return bool(self._exec("DELETE FROM hive_drivers WHERE hive_id = ? AND instance = ?",
                                   (hive_id, instance)).rowcount == 1)

    def hive_driver(self, hive_id: str) -> HiveDriver | None:
        row = self._one(f"SELECT {DRIVER_COLS} FROM hive_drivers WHERE hive_id = ?", (hive_id,))
        return None if row is None else _driver(row)

    # -- whole-store views (doctor, RVF export) ----------------------------------------------------
    def integrity_check(self) -> str:
        """"ok", or what SQLite's quick_check found (Postgres: "ok" once it answers)."""
        if self._sql.postgres:
            self.ping()
            return "ok"
        rows = self._read("PRAGMA quick_check")
        return "; ".join(str(row[0]) for row in rows[:5])

    def iter_conversations(self, batch: int = 500) -> Iterator[Conversation]:
        """Every conversation of every user, oldest first, read in pages."""
        last: tuple[float, str] = (-1e300, "")
        while True:
            rows = self._read(f"SELECT {CONVERSATION_COLS} FROM conversations WHERE "
                              "(created_at > ? OR (created_at = ? AND id > ?)) "
                              "ORDER BY created_at, id LIMIT ?",
                              (last[0], last[0], last[1], batch))
            for row in rows:
                yield _conversation(row)
            if len(rows) < batch:
                return
            last = (rows[-1][7], rows[-1][0])

    def all_user_settings(self) -> list[tuple[str, JSON]]:
        return [(row[0], _loads(row[1])) for row in self._read(
            "SELECT user_id, data FROM user_settings ORDER BY user_id")]
