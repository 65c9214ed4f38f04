"""`ruflo notify test`: send a test message through the configured senders and show each
provider's answer. Imports only typer and the standard library at module level.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

app = typer.Typer(help="Send a test notification through a configured sender.",
                  no_args_is_help=True, add_completion=False)


@app.callback()
def main() -> None:
    """Notifications: Telegram, e-mail (Resend) and webhook senders."""


@app.command("test")
def send_test(
    sender: Annotated[str | None, typer.Option(
        "--sender", help="telegram, email or webhook (default: every configured sender).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
    timeout: Annotated[float, typer.Option("--timeout", min=0.1,
                                           help="Seconds to wait for each provider.")] = 15.0,
) -> None:
    """Send a test message and print the provider's answer. Exits 1 when a send fails."""
    from ruflo.config import load_settings
    from ruflo.errors import ConfigError
    from ruflo.notify import configured_senders, test_notification
    from ruflo.notify.rules import SENDER_NAMES
    from ruflo.shell.alert import run_blocking

    setup = configured_senders(load_settings(), timeout=timeout)
    for problem in setup.problems:
        typer.echo(f"warning: {problem}", err=True)
    if sender is not None:
        if sender not in SENDER_NAMES:
            raise ConfigError(f"unknown sender {sender!r}; choose one of {', '.join(SENDER_NAMES)}")
        if sender not in setup.senders:
            raise ConfigError(f"{sender} is not configured: missing "
                              f"{setup.missing.get(sender, 'its settings')}; nothing was sent")
        chosen = [setup.senders[sender]]
    else:
        chosen = list(setup.senders.values())
        if not chosen:
            missing = "; ".join(f"{name}: {what}" for name, what in setup.missing.items())
            raise ConfigError(f"no sender is configured ({missing}); nothing was sent")

    message = test_notification()

    async def send_all() -> list[object]:
        import asyncio

        return list(await asyncio.gather(*(s.send(message) for s in chosen)))

    from ruflo.notify import Delivery

    deliveries = [d for d in run_blocking(send_all()) if isinstance(d, Delivery)]
    if as_json:
        typer.echo(json.dumps([{"sender": d.sender, "ok": d.ok, "status_code": d.status_code,
                                "description": d.description, "answer": d.answer}
                               for d in deliveries], indent=2, ensure_ascii=False, default=str))
    else:
        for d in deliveries:
            status = f"HTTP {d.status_code}" if d.status_code is not None else "no answer"
            typer.echo(f"{d.sender}: {'sent' if d.ok else 'FAILED'} ({status}): {d.description}")
            if d.answer is not None:
                answer = d.answer if isinstance(d.answer, str) else json.dumps(d.answer)
                typer.echo(f"  answer: {answer[:1000]}")
    if not all(d.ok for d in deliveries):
        raise SystemExit(1)
