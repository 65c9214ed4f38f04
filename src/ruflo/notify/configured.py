"""Which senders the settings make usable, and what is missing for the others.

Depends on notify's senders and rules; reads settings by field name (ruflo.config.Settings).
`notify_status` is what the boot trace and `ruflo doctor` print, once, instead of complaining on
every event.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruflo.notify.base import Notifier
from ruflo.notify.email import DEFAULT_API_BASE as RESEND_API_BASE
from ruflo.notify.email import ResendSender, split_addresses
from ruflo.notify.rules import ALL, SENDER_NAMES, RulesError, parse_rules
from ruflo.notify.telegram import DEFAULT_API_BASE as TELEGRAM_API_BASE
from ruflo.notify.telegram import TelegramSender, read_credentials_file
from ruflo.notify.webhook import WebhookSender


@dataclass
class SenderSetup:
    """The senders ready to use and, for each of the others, what it lacks."""

    senders: dict[str, Notifier] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)
    """Sender name -> the settings it still needs, in words."""
    problems: list[str] = field(default_factory=list)
    """Settings present but unusable (unreadable credentials file, bad rules JSON)."""
    rules: dict[str, tuple[str, ...]] = field(default_factory=dict)


def setting(settings: Any, name: str) -> Any:
    """A settings value with SecretStr unwrapped and blank strings read as absent."""
    value = getattr(settings, name, None)
    if value is not None and hasattr(value, "get_secret_value"):
        value = value.get_secret_value()
    if isinstance(value, str) and not value.strip():
        return None
    return value


def configured_senders(settings: Any, *, timeout: float = 10.0) -> SenderSetup:
    setup = SenderSetup()
    try:
        setup.rules = parse_rules(setting(settings, "notify_rules"))
    except RulesError as error:
        setup.problems.append(f"{error}; the default rules are used")
        setup.rules = parse_rules(None)

    token = setting(settings, "telegram_bot_token")
    chat_id = setting(settings, "telegram_chat_id")
    credentials_file = setting(settings, "telegram_credentials_file")
    if (token is None or chat_id is None) and credentials_file is not None:
        try:
            file_token, file_chat = read_credentials_file(Path(credentials_file))
        except OSError as error:
            setup.problems.append(f"telegram: credentials file {credentials_file} can't be read "
                                  f"({error.strerror or error})")
        else:
            token = token or file_token
            chat_id = chat_id or file_chat
    if token and chat_id:
        setup.senders["telegram"] = TelegramSender(
            str(token), str(chat_id),
            api_base=setting(settings, "telegram_api_base") or TELEGRAM_API_BASE, timeout=timeout)
    else:
        lacking = [label for label, value in (
            ("RUFLO_TELEGRAM_BOT_TOKEN (or FRANK_C2_TELEGRAM_BOT_TOKEN)", token),
            ("RUFLO_TELEGRAM_CHAT_ID (or FRANK_C2_TELEGRAM_CHAT_ID)", chat_id)) if not value]
        setup.missing["telegram"] = (" and ".join(lacking)
                                     + ", or a RUFLO_TELEGRAM_CREDENTIALS_FILE with TOKEN= and "
                                       "CHAT_ID= lines")

    api_key = setting(settings, "resend_api_key")
    email_from = setting(settings, "notify_email_from")
    email_to = split_addresses(setting(settings, "notify_email_to"))
    if api_key and email_from and email_to:
        setup.senders["email"] = ResendSender(
            str(api_key), str(email_from), email_to,
            api_base=setting(settings, "resend_api_base") or RESEND_API_BASE, timeout=timeout)
    else:
        setup.missing["email"] = " and ".join(label for label, value in (
            ("RESEND_API_KEY", api_key), ("RUFLO_NOTIFY_EMAIL_FROM", email_from),
            ("RUFLO_NOTIFY_EMAIL_TO", email_to)) if not value)

    url = setting(settings, "webhook_url")
    if url:
        try:
            setup.senders["webhook"] = WebhookSender(
                str(url), secret=setting(settings, "webhook_secret"), timeout=timeout)
        except ValueError as error:
            setup.problems.append(f"webhook: {error}")
    else:
        setup.missing["webhook"] = "RUFLO_WEBHOOK_URL"
    return setup


def notify_status(settings: Any) -> list[str]:
    """One line per sender (ready, or what it lacks), then any problem with the rules. Printed
    once at boot; events for a sender that isn't configured are then skipped quietly."""
    setup = configured_senders(settings)
    lines: list[str] = []
    for name in SENDER_NAMES:
        sender = setup.senders.get(name)
        if sender is not None:
            lines.append(f"notify {name}: ready ({sender!r})")
        elif name in setup.missing:
            lines.append(f"notify {name}: off, missing {setup.missing[name]}")
    lines.extend(f"notify: {problem}" for problem in setup.problems)
    if not setup.senders:
        lines.append("notify: no sender is configured; nobody will hear about approvals, "
                     "budgets or stopped hives")
    else:
        unreachable = sorted(kind for kind, names in setup.rules.items()
                             if names and ALL not in names
                             and not any(n in setup.senders for n in names))
        if unreachable:
            lines.append("notify: rules send " + ", ".join(unreachable)
                         + " only to senders that are not configured")
    return lines
