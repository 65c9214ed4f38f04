"""Turn hive events into messages a person understands: which hive, what happened, what to do.

Depends on the core model and ruflo.errors (the outage pause's reason) only.
"""

from __future__ import annotations

from typing import Any

from ruflo.errors import GatewayUnavailable
from ruflo.event_kinds import EventKind
from ruflo.model import Event
from ruflo.notify.base import Notification

KEY_REFUSED_HINTS = ("refused the key", "401", "unauthorized", "api key", "virtual key")
GATEWAY_UNREACHABLE = GatewayUnavailable.pause_reason


def event_notification(event: Event, hive_name: str | None = None) -> Notification:
    """The message for `event`. `hive_name` is looked up by the caller (events carry ids)."""
    data = event.data or {}
    name = hive_name or _text(data.get("hive_name"))
    hive = f"hive '{name}' ({event.hive_id})" if name else f"hive {event.hive_id}"
    short = f"'{name}'" if name else event.hive_id
    kind = event.kind
    facts: dict[str, Any] = {"hive_id": event.hive_id, "hive_name": name, "seq": event.seq,
                             "event": kind, "data": data}

    if kind == EventKind.APPROVAL_REQUESTED:
        approval_id = _text(data.get("approval_id") or data.get("id"))
        subject = _text(data.get("subject")) or "a decision"
        what = _text(data.get("approval_kind") or data.get("kind"))
        title = f"ruflo: {short} waits for your approval"
        text = (f"The {hive} waits for a person to decide: {subject}"
                f"{f' ({what})' if what else ''}.\n"
                f"The work that depends on it is on hold until someone decides.\n"
                f"What to do: approve or reject it on the hive's page"
                f"{f' or with `ruflo approval approve {approval_id}` / `ruflo approval reject {approval_id}`' if approval_id else ''}.")
        condition = f"approval:{approval_id or subject}"
    elif kind in (EventKind.BUDGET_WARNING, EventKind.BUDGET_EXCEEDED):
        scope = _scope(data, hive)
        usage = _usage(data)
        if kind == EventKind.BUDGET_WARNING:
            title = f"ruflo: {short} used {usage[0] or 'most'} of its budget"
            text = (f"The budget of {scope} is {usage[0] or 'nearly'} used{usage[1]}.\n"
                    f"The hive keeps running; at 100% it stops before the next call.\n"
                    f"What to do: raise the budget now if the work should finish"
                    + (f" (`ruflo hive resume {event.hive_id} --no-run --budget-tokens N` or "
                       f"`--budget-cost USD` raises a running hive's)"
                       if data.get("scope", "hive") == "hive" else "")
                    + ", or let it stop.")
        else:
            title = f"ruflo: {short} stopped, budget spent"
            text = (f"The budget of {scope} is spent{usage[1]}; ruflo stopped its gateway calls. "
                    f"Nothing is lost.\n"
                    f"What to do: raise the budget and resume the hive (`ruflo hive resume "
                    f"{event.hive_id} --budget-tokens N` or `--budget-cost USD`), or leave it "
                    f"stopped.")
        condition = (f"{kind}:{event.hive_id}:{data.get('scope', 'hive')}:"
                     f"{data.get('scope_id') or event.agent_id or ''}")
    elif kind == EventKind.HIVE_PAUSED:
        reason = _text(data.get("reason") or data.get("pause_reason")) or "no reason given"
        title = f"ruflo: {short} paused: {reason}"
        if reason == GATEWAY_UNREACHABLE:
            advice = ("The gateway stopped answering (errors 5xx, refused connections or "
                      "timeouts) past ruflo's retries: an outage, not the work's fault. Nothing "
                      "is lost; claimed tasks go back to the board and no attempt is counted.\n"
                      "ruflo keeps looking at the gateway (at most RUFLO_GATEWAY_PROBE_SECONDS, "
                      "30 s by default, apart) and resumes the hive by itself when it answers; "
                      "you will hear of it.\n"
                      "What to do: nothing, unless it lasts: check the gateway (`ruflo doctor`). "
                      f"`ruflo hive pause {event.hive_id}` keeps it paused even then.")
        elif any(hint in reason.lower() for hint in KEY_REFUSED_HINTS):
            advice = ("The gateway refused ruflo's key, so no agent can reach a model. "
                      "Nothing is lost; claimed tasks go back to the board.\n"
                      "What to do: check OPENAI_API_KEY (the gateway's virtual key) and the "
                      f"gateway, then `ruflo hive resume {event.hive_id}`.")
        else:
            advice = ("Nothing is lost.\n"
                      f"What to do: fix the cause, then `ruflo hive resume {event.hive_id}`.")
        text = f"The {hive} paused: {reason}.\n{advice}"
        condition = f"hive_paused:{event.hive_id}:{reason}"
    elif kind == EventKind.GATEWAY_BACK:
        down = data.get("down_seconds")
        was = f" after {down:g} s" if isinstance(down, int | float) else ""
        title = f"ruflo: {short} resumed, the gateway is back"
        text = (f"The gateway answers again{was}: the {hive} resumed by itself and its agents "
                f"went back to work.\n"
                f"What to do: nothing; `ruflo hive show {event.hive_id}` shows how it goes.")
        condition = f"gateway_back:{event.hive_id}"
    elif kind == EventKind.HIVE_DONE:
        title = f"ruflo: {short} is done"
        text = f"The {hive} finished its work.{_counts(data)}\nWhat to do: read the results."
        condition = f"hive_done:{event.hive_id}"
    elif kind == EventKind.HIVE_FAILED:
        reason = _text(data.get("reason")) or "no reason given"
        title = f"ruflo: {short} failed"
        text = (f"The {hive} failed: {reason}.{_counts(data)}\n"
                f"What to do: read its events (`ruflo hive show {event.hive_id} --events 100`) and "
                f"decide whether to run it again.")
        condition = f"hive_failed:{event.hive_id}"
    elif kind == "reconcile_failed":
        summary = _text(data.get("summary")) or "the shell's tool reconcile failed"
        title = "ruflo-shell: tool reconcile failed"
        text = f"{summary}\nWhat to do: read the log{_log(data)} and fix the inventory or the tool."
        condition = f"reconcile_failed:{summary}"
    else:
        title = f"ruflo: {short}: {kind.replace('_', ' ')}"
        details = ", ".join(f"{k}={v}" for k, v in sorted(data.items()))
        text = f"The {hive}: {kind.replace('_', ' ')}" + (f" ({details})" if details else "") + "."
        condition = f"{kind}:{event.hive_id}:{event.agent_id or ''}:{event.task_id or ''}"
    return Notification(title=title, text=text, kind=kind, hive_id=event.hive_id,
                        condition=condition, data=facts)


def test_notification() -> Notification:
    return Notification(title="ruflo: test notification",
                        text="This is a test from `ruflo notify test`. If you read this, "
                             "ruflo can reach you here.",
                        kind="test", condition="test")


def _text(value: Any) -> str:
    return str(value).strip() if value is not None else ""


def _scope(data: dict[str, Any], hive: str) -> str:
    if data.get("scope") == "agent":
        agent = _text(data.get("agent_name") or data.get("scope_id") or data.get("agent_id"))
        return f"agent {agent} in {hive}" if agent else f"an agent in {hive}"
    return hive


def _usage(data: dict[str, Any]) -> tuple[str, str]:
    """("82%", " (0.82 of 1.00 USD)") from the budget event's snapshot (fraction, spent_cost /
    max_cost, spent_tokens / max_tokens) or plain spent / limit / percent."""
    spent, limit, unit = data.get("spent"), data.get("limit"), _text(data.get("unit"))
    if limit is None and isinstance(data.get("max_cost"), int | float):
        spent, limit, unit = data.get("spent_cost"), data["max_cost"], "USD"
    elif limit is None and isinstance(data.get("max_tokens"), int | float):
        spent, limit, unit = data.get("spent_tokens"), data["max_tokens"], "tokens"
    percent = data.get("percent")
    if percent is None and isinstance(data.get("fraction"), int | float):
        percent = 100.0 * data["fraction"]
    if percent is None and isinstance(spent, int | float) and isinstance(limit, int | float) and limit:
        percent = 100.0 * spent / limit
    shown = f"{percent:.0f}%" if isinstance(percent, int | float) else ""
    unit = unit or ("tokens" if isinstance(spent, int) else "USD")
    amounts = ""
    if isinstance(spent, int | float) and isinstance(limit, int | float):
        amounts = (f" ({spent:,} of {limit:,} {unit})" if unit == "tokens"
                   else f" ({spent:.2f} of {limit:.2f} {unit})")
    return shown, amounts


def _counts(data: dict[str, Any]) -> str:
    counts = data.get("tasks") or data.get("counts")
    if isinstance(counts, dict) and counts:
        return " Tasks: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) + "."
    return ""


def _log(data: dict[str, Any]) -> str:
    log = _text(data.get("log"))
    return f" ({log})" if log else ""
