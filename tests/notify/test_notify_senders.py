"""Each sender against a local stand-in for its provider: what goes over the wire, and how the
provider's answer (success, error description, hang, 429) comes back."""

from __future__ import annotations

import hashlib
import hmac
import socket

from ruflo.notify import Notification, ResendSender, TelegramSender, WebhookSender
from ruflo.notify.telegram import TEXT_LIMIT, read_credentials_file, telegram_text
from ruflo.notify.testing import ProviderStandIn, Reply

MESSAGE = Notification(title="ruflo: hive 'docs' paused", text="The gateway refused the key.",
                       kind="hive_paused", hive_id="h1", condition="c")


async def test_telegram_sends_chat_id_and_text(telegram: ProviderStandIn) -> None:
    sender = TelegramSender("123:SECRET", "-1001", api_base=telegram.url)
    delivery = await sender.send(MESSAGE)
    assert delivery.ok, delivery
    assert delivery.description == "sent (message_id 1)"
    [request] = telegram.received
    assert request.path == "/bot123:SECRET/sendMessage"
    body = request.json()
    assert body["chat_id"] == "-1001"
    assert body["text"].startswith("ruflo: hive 'docs' paused\n\nThe gateway refused the key.")


async def test_telegram_error_answer_keeps_description_and_hides_token(
        telegram: ProviderStandIn) -> None:
    telegram.script(Reply(400, {"ok": False, "error_code": 400,
                                "description": "Bad Request: chat not found"}))
    delivery = await TelegramSender("123:SECRET", "42", api_base=telegram.url).send(MESSAGE)
    assert not delivery.ok
    assert delivery.description == "Bad Request: chat not found"
    assert delivery.status_code == 400
    assert not delivery.retryable
    assert "SECRET" not in repr(TelegramSender("123:SECRET", "42"))


async def test_telegram_200_with_ok_false_is_a_failure(telegram: ProviderStandIn) -> None:
    telegram.script(Reply(200, {"ok": False, "description": "Forbidden: bot was blocked"}))
    delivery = await TelegramSender("123:SECRET", "42", api_base=telegram.url).send(MESSAGE)
    assert not delivery.ok
    assert delivery.description == "Forbidden: bot was blocked"


async def test_telegram_429_is_retryable_with_retry_after(telegram: ProviderStandIn) -> None:
    telegram.script(Reply(429, {"ok": False, "error_code": 429,
                                "description": "Too Many Requests: retry after 7",
                                "parameters": {"retry_after": 7}}))
    delivery = await TelegramSender("t", "42", api_base=telegram.url).send(MESSAGE)
    assert delivery.retryable
    assert delivery.retry_after == 7.0


def test_telegram_text_is_cut_to_the_limit_without_splitting_characters() -> None:
    long = Notification(title="t", text="🐝" * 5000)
    text = telegram_text(long)
    assert len(text.encode("utf-16-le")) // 2 <= TEXT_LIMIT
    text.encode("utf-8")  # a split surrogate pair would raise here
    assert text.endswith("(cut)")
    assert telegram_text(Notification(title="  ", text="")) != ""


async def test_resend_sends_bearer_from_to_subject_text(resend: ProviderStandIn) -> None:
    sender = ResendSender("re_KEY", "ruflo@example.org", ["ops@example.org"], api_base=resend.url)
    delivery = await sender.send(MESSAGE)
    assert delivery.ok
    assert delivery.description == "sent (id email-1)"
    [request] = resend.received
    assert request.path == "/emails"
    assert request.headers["Authorization"] == "Bearer re_KEY"
    body = request.json()
    assert body == {"from": "ruflo@example.org", "to": ["ops@example.org"],
                    "subject": MESSAGE.title, "text": MESSAGE.text}


async def test_resend_error_message_is_the_description(resend: ProviderStandIn) -> None:
    resend.script(Reply(422, {"statusCode": 422, "name": "validation_error",
                              "message": "The `from` domain is not verified."}))
    delivery = await ResendSender("re_KEY", "a@b.c", ["d@e.f"], api_base=resend.url).send(MESSAGE)
    assert not delivery.ok
    assert delivery.description == "The `from` domain is not verified."


async def test_webhook_signature_is_hmac_of_the_exact_body(webhook: ProviderStandIn) -> None:
    delivery = await WebhookSender(f"{webhook.url}/hook", secret="s3cret").send(MESSAGE)
    assert delivery.ok
    [request] = webhook.received
    expected = hmac.new(b"s3cret", request.body, hashlib.sha256).hexdigest()
    assert request.headers["X-Ruflo-Signature"] == f"sha256={expected}"
    body = request.json()
    assert body["kind"] == "hive_paused"
    assert body["hive_id"] == "h1"
    assert body["text"] == MESSAGE.text


async def test_webhook_without_secret_is_unsigned_and_5xx_is_retryable(
        webhook: ProviderStandIn) -> None:
    webhook.script(Reply(503, {"detail": "maintenance"}))
    delivery = await WebhookSender(webhook.url).send(MESSAGE)
    assert not delivery.ok
    assert delivery.retryable
    assert delivery.description == "maintenance"
    assert "X-Ruflo-Signature" not in webhook.received[0].headers


async def test_connection_refused_is_a_retryable_delivery_not_an_exception() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    delivery = await TelegramSender("123:SECRET", "1",
                                    api_base=f"http://127.0.0.1:{port}").send(MESSAGE)
    assert not delivery.ok
    assert delivery.retryable
    assert delivery.status_code is None
    assert "SECRET" not in delivery.description


async def test_a_hanging_provider_times_out(telegram: ProviderStandIn) -> None:
    telegram.script(Reply(hang=True))
    delivery = await TelegramSender("t", "1", api_base=telegram.url, timeout=0.2).send(MESSAGE)
    assert not delivery.ok
    assert delivery.retryable
    assert delivery.description == "no answer within 0.2 s"


def test_credentials_file_reads_prefixed_names(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "telegram.env"
    path.write_text("# alerts\nexport FRANK_C2_TELEGRAM_BOT_TOKEN='123:abc'\n"
                    "FRANK_C2_TELEGRAM_CHAT_ID=-100\n")
    assert read_credentials_file(path) == ("123:abc", "-100")


async def test_the_telegram_stand_in_answers_the_button_poller_like_a_quiet_bot(
        telegram: ProviderStandIn) -> None:
    """`ruflo serve` polls getUpdates whenever Telegram is configured; the stand-in answers that
    poll with no presses and keeps it out of `received`, which holds only what was sent."""
    import httpx

    from ruflo.notify.telegram_buttons import TelegramButtons

    buttons = TelegramButtons("123:SECRET", "42", lambda *_: "unused", api_base=telegram.url,
                              poll_seconds=0)
    async with httpx.AsyncClient() as client:
        assert await buttons.poll_once(client) == 0
    await TelegramSender("123:SECRET", "42", api_base=telegram.url).send(MESSAGE)
    assert telegram.polls == 1
    [sent] = telegram.received
    assert sent.path.endswith("/sendMessage")
