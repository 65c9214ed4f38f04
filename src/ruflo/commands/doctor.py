"""`ruflo doctor`: print the boot trace and check the settings, the store, the keys, the
sandbox and the agent CLIs (found, version, a one-call handshake through the model relay).

Imports only typer and the stdlib at module level; settings and the store load when it runs.
More checks (the gateway) append to `doctor_checks`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ruflo.event_kinds import EventKind

if TYPE_CHECKING:
    from ruflo.config import Settings

app = typer.Typer(help="Check settings, store, gateway and keys; print the boot trace.",
                  add_completion=False)


@dataclass(frozen=True, slots=True)
class Check:
    """One line of the doctor's verdict."""

    name: str
    ok: bool
    detail: str
    fatal: bool = True
    """A failed fatal check makes `ruflo doctor` exit non-zero; others are warnings."""
    data: dict[str, Any] | None = None
    """Details for scripts (`--json`), e.g. an agent CLI's program, version and handshake."""


def check_store(settings: Settings) -> Check:
    """Open the store the settings name (never a fallback) and run a quick integrity check."""
    from ruflo.config import describe_store
    from ruflo.errors import StoreError
    from ruflo.store import open_store

    try:
        store = open_store(settings)
    except StoreError as error:
        return Check("store", False, str(error))
    try:
        verdict = store.integrity_check()
        if verdict != "ok":
            return Check("store", False, f"{describe_store(settings)}: integrity check found "
                                         f"{verdict}")
        hives = len(store.list_hives(limit=1_000_000))
        conversations = store.count_conversations()
        state = "created just now (it was empty)" if store.created else "opened"
        return Check("store", True, f"{describe_store(settings)} {state}: {hives} hives, "
                                    f"{conversations} conversations")
    except StoreError as error:
        return Check("store", False, str(error))
    finally:
        store.close()


def check_keys(settings: Settings) -> Check:
    keys = [f for f in settings.findings if f.startswith("direct provider key")]
    if not keys:
        return Check("keys", True, "no direct provider keys in the environment")
    names = ", ".join(f.split()[3] for f in keys)
    return Check("keys", False, f"direct provider keys in the environment: {names}",
                 fatal=settings.strict_keys)


def check_gateway(settings: Settings) -> Check:
    """Ask the gateway for its model list with the configured key: the one call that shows
    both that it answers and that it accepts the key. Nothing is metered (no completion)."""
    import asyncio

    from ruflo.errors import RufloError
    from ruflo.gateway.client import GatewayClient

    if not settings.gateway_url:
        return Check("gateway", False, "not configured: set OPENAI_BASE_URL (or LITELLM_BASE_URL) "
                                       "to your OpenAI-compatible gateway", fatal=False)

    async def ask() -> int:
        client = GatewayClient.from_settings(settings)
        try:
            return len(await client.models(refresh=True))
        finally:
            await client.aclose()

    try:
        count = asyncio.run(ask())
    except RufloError as error:
        return Check("gateway", False, f"{settings.gateway_url}: {error}")
    return Check("gateway", True, f"{settings.gateway_url} (from {settings.gateway_url_var}) "
                                  f"answers with {count} models for this key")


def check_notify(settings: Settings) -> Check:
    from ruflo.notify.configured import notify_status

    lines = notify_status(settings)
    problems = [line for line in lines if ": ready" not in line]
    detail = "; ".join(lines) if lines else "no senders"
    return Check("notify", not problems or any(": ready" in line for line in lines), detail,
                 fatal=False)


RECENT_HIVES = 20
RECENT_HOURS = 24


def check_notify_failures(settings: Settings) -> Check:
    """Notifications that could not be delivered lately: `notify_failed` events of the most
    recent hives within the last day (a bounded read: a few hives, one event kind)."""
    from datetime import timedelta

    from ruflo.errors import StoreError
    from ruflo.model import utcnow
    from ruflo.store import open_store

    try:
        store = open_store(settings)
    except StoreError as error:
        return Check("notify delivery", False, f"not checked: {error}", fatal=False)
    try:
        since = utcnow() - timedelta(hours=RECENT_HOURS)
        failed = [event for hive in store.list_hives(limit=RECENT_HIVES)
                  for event in store.events(hive.id, kinds=[EventKind.NOTIFY_FAILED])
                  if event.ts >= since]
    except StoreError as error:
        return Check("notify delivery", False, f"not checked: {error}", fatal=False)
    finally:
        store.close()
    scope = f"in the last {RECENT_HOURS} h (the {RECENT_HIVES} newest hives)"
    if not failed:
        return Check("notify delivery", True, f"no failed notifications {scope}", fatal=False)
    last = max(failed, key=lambda event: event.ts)
    return Check("notify delivery", False,
                 f"{len(failed)} notification(s) could not be delivered {scope}; the last, "
                 f"on hive {last.hive_id}: {last.data.get('sender') or 'queue'}: "
                 f"{last.data.get('description') or 'no description'}", fatal=False)


def check_memory(settings: Settings) -> Check:
    """Which search `ruflo memory` and `ruflo mcp` use; the ONNX Runtime encoder is built once to
    be sure `ruflo mcp` gets it."""
    from ruflo.memory import search_backend

    return Check("memory search", True, search_backend(try_engine=True), fatal=False)


def check_sandbox(settings: Settings) -> Check:
    """Whether agents' commands and verify run confined: bubblewrap works (ok), the operator
    opted out (a warning) or commands would be refused (a failure: hives could not work)."""
    from ruflo.agents.sandbox import sandbox_for

    sandbox = sandbox_for(settings)
    detail = sandbox.describe().removeprefix("commands: ")
    if sandbox.refusal is not None:
        return Check("sandbox", False, detail)
    return Check("sandbox", sandbox.confines, detail, fatal=False)


def check_agent_clis(settings: Settings, *, skip: str | None = None) -> list[Check]:
    """One line per agent CLI found (its version, and whether it completes a one-call handshake
    through the relay to the gateway), one for those not installed. Warnings only: hives that
    use none of them don't need them."""
    import asyncio

    from ruflo.agents.presets.handshake import check_agent_clis as find

    reports = asyncio.run(find(settings, skip=skip))
    checks = [Check(f"agent cli {r.name}", r.handshake is not False,
                    f"{r.version} at {r.program}: {r.detail}" if r.handshake is not None
                    else r.detail, fatal=False, data=r.data())
              for r in reports if r.program is not None]
    missing = [r for r in reports if r.program is None]
    if missing:
        checks.append(Check("agent clis not installed", True,
                            "; ".join(f"{r.name} {r.detail}" for r in missing), fatal=False,
                            data={r.name: None for r in missing}))
    return checks


def doctor_checks(settings: Settings, *, agent_clis: bool = True) -> list[Check]:
    """Every check the doctor runs, in order. Append new checks here. The agent CLIs' handshakes
    run only when the gateway answered (each is a metered call of the gateway)."""
    gateway = check_gateway(settings)
    sandbox = check_sandbox(settings)
    return [check_store(settings), check_keys(settings), gateway, sandbox,
            check_notify(settings), check_notify_failures(settings), check_memory(settings),
            *check_agent_clis(settings, skip=(
                "--no-handshakes" if not agent_clis else
                "the gateway check failed" if not gateway.ok else
                "commands are refused" if not sandbox.ok and sandbox.fatal else None))]


@app.callback(invoke_without_command=True)
def doctor(as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")]
           = False,
           handshakes: Annotated[bool, typer.Option(
               "--handshakes/--no-handshakes",
               help="Run each agent CLI found once through the relay (a gateway call each).")]
           = True) -> None:
    """Print the boot trace and check the store; exit 1 when a check fails."""
    from ruflo.agents.sandbox import sandbox_trace
    from ruflo.config import boot_trace, load_settings
    from ruflo.errors import ConfigError

    try:
        settings = load_settings()
    except ConfigError as error:
        if as_json:
            typer.echo(json.dumps({"ok": False, "trace": [], "checks": [
                {"name": "settings", "ok": False, "detail": str(error), "fatal": True}]}))
        else:
            typer.echo(f"FAIL settings: {error}", err=True)
        raise SystemExit(1) from None
    trace = [*boot_trace(settings), *sandbox_trace(settings)]
    checks = doctor_checks(settings, agent_clis=handshakes)
    failed = any(not check.ok and check.fatal for check in checks)
    if as_json:
        typer.echo(json.dumps({"ok": not failed, "trace": trace,
                               "checks": [asdict(check) for check in checks]}, indent=2))
    else:
        for line in trace:
            typer.echo(line)
        for check in checks:
            mark = "ok  " if check.ok else ("FAIL" if check.fatal else "warn")
            typer.echo(f"{mark} {check.name}: {check.detail}")
    if failed:
        raise SystemExit(1)
