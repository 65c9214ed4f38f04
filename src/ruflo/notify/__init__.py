"""Notifications: tell a person when a hive needs them or stops, and when the shell's tool
reconcile failed. Depends on the core model only (never on the store or the engine).
"""

from ruflo.notify.base import Delivery, Notification, Notifier
from ruflo.notify.configured import SenderSetup, configured_senders, notify_status
from ruflo.notify.dispatcher import Dispatcher, DispatchStats, EventRecorder, deliver
from ruflo.notify.email import ResendSender
from ruflo.notify.messages import event_notification, test_notification
from ruflo.notify.rules import DEFAULT_RULES, parse_rules
from ruflo.notify.telegram import TelegramSender
from ruflo.notify.webhook import SIGNATURE_HEADER, WebhookSender, sign

__all__ = [
    "DEFAULT_RULES",
    "SIGNATURE_HEADER",
    "Delivery",
    "DispatchStats",
    "Dispatcher",
    "EventRecorder",
    "Notification",
    "Notifier",
    "ResendSender",
    "SenderSetup",
    "TelegramSender",
    "WebhookSender",
    "configured_senders",
    "deliver",
    "event_notification",
    "notify_status",
    "parse_rules",
    "sign",
    "test_notification",
]
