"""Classify what went wrong talking to the gateway, and word it for a person.

Depends on ruflo.errors and the `openai` SDK's exception types. `classify()` turns an SDK
exception (or an HTTP status with a LiteLLM error body) into a `Failure`; `Failure.to_error()`
builds the one-line RufloError once the client knows what it did about it (retried, paused).
"""

from __future__ import annotations

import email.utils
import enum
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import openai

from ruflo.errors import (
    GatewayAuthError,
    GatewayBadResponse,
    GatewayBudgetError,
    GatewayError,
    GatewayRateLimited,
    GatewayRequestRejected,
    GatewayUnavailable,
)

AUTH_TYPES = frozenset({"token_not_found_in_db", "auth_error", "no_db_connection",
                        "authentication_error", "invalid_api_key"})
"""LiteLLM/OpenAI error types that mean "this key is not accepted"."""


class FailureKind(enum.StrEnum):
    AUTH = "auth"
    BUDGET = "budget"
    RATE_LIMITED = "rate_limited"
    UNAVAILABLE = "unavailable"
    BAD_RESPONSE = "bad_response"
    REJECTED = "rejected"

    @property
    def retried(self) -> bool:
        return self in (FailureKind.RATE_LIMITED, FailureKind.UNAVAILABLE)


ERROR_CLASSES: dict[FailureKind, type[GatewayError]] = {
    FailureKind.AUTH: GatewayAuthError,
    FailureKind.BUDGET: GatewayBudgetError,
    FailureKind.RATE_LIMITED: GatewayRateLimited,
    FailureKind.UNAVAILABLE: GatewayUnavailable,
    FailureKind.BAD_RESPONSE: GatewayBadResponse,
    FailureKind.REJECTED: GatewayRequestRejected,
}


@dataclass(frozen=True, slots=True)
class Failure:
    """One failed attempt, classified."""

    kind: FailureKind
    detail: str
    """What the gateway said, shortened to one line."""
    status: int | None = None
    error_type: str | None = None
    retry_after: float | None = None
    """Seconds the gateway asked us to wait (429)."""

    def to_error(self, base_url: str, *, attempts: int = 1, elapsed: float = 0.0,
                 paused: bool = False) -> GatewayError:
        """The error for a person: what happened, what ruflo did, what to do."""
        said = f"{self.status} {self.error_type or ''}".strip() if self.status else ""
        said = f"{said}: {self.detail}" if said else self.detail
        pause = "paused the hive (its claimed task stays recoverable)" if paused else \
            "stopped this call"
        tries = f"after {attempts} attempts over {elapsed:.1f} s" if attempts > 1 else "at once"
        if self.kind is FailureKind.AUTH:
            text = (f"the gateway at {base_url} refused the key ({said}); ruflo did not retry "
                    f"and {pause}; a LiteLLM-fronted gateway needs a LiteLLM virtual key in "
                    f"OPENAI_API_KEY, not a provider key: set a valid one, then resume")
        elif self.kind is FailureKind.BUDGET:
            text = (f"the gateway at {base_url} says the key's budget is spent ({said}); ruflo "
                    f"did not retry and {pause}; raise the key's budget at the gateway or use "
                    f"another key, then resume")
        elif self.kind is FailureKind.RATE_LIMITED:
            text = (f"the gateway at {base_url} kept rate-limiting ruflo ({said}); ruflo gave up "
                    f"{tries}; lower the number of agents working at once or raise the key's "
                    f"rpm/tpm limits")
        elif self.kind is FailureKind.UNAVAILABLE:
            text = (f"the gateway at {base_url} is unavailable ({said}); ruflo gave up {tries}; "
                    f"check that the gateway is up (`ruflo doctor`) and try again")
        elif self.kind is FailureKind.BAD_RESPONSE:
            text = (f"the gateway at {base_url} sent an answer that is not what an "
                    f"OpenAI-compatible API sends ({said}); ruflo stopped this call; check that "
                    f"OPENAI_BASE_URL points at the gateway's OpenAI-compatible API")
        else:
            text = (f"the gateway at {base_url} rejected the request ({said}); ruflo did not "
                    f"retry; check the model name and the size of the conversation")
        error = ERROR_CLASSES[self.kind](text)
        error.hive_paused = paused
        return error


def one_line(text: str, limit: int = 200) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[:limit - 1] + "…"


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """Seconds from `retry-after-ms` or `retry-after` (seconds or an HTTP date)."""
    raw_ms = headers.get("retry-after-ms")
    if raw_ms:
        try:
            return max(0.0, float(raw_ms) / 1000)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - time.time())


def _error_fields(body: object) -> tuple[str | None, str]:
    """(type, message) from a LiteLLM/OpenAI error body, whichever level the SDK handed us."""
    if isinstance(body, Mapping) and isinstance(body.get("error"), Mapping):
        body = body["error"]
    if isinstance(body, Mapping):
        kind = body.get("type")
        message = body.get("message")
        if isinstance(message, Mapping | list):
            message = json.dumps(message)
        return (str(kind) if kind else None), str(message or "")
    if isinstance(body, str):
        return None, body
    return None, ""


def classify_status(status: int, body: object, headers: Mapping[str, str]) -> Failure:
    """Classify an HTTP error answer. LiteLLM's `type` decides before the status does:
    `budget_exceeded` comes as 400 or 429 depending on the build."""
    error_type, message = _error_fields(body)
    detail = one_line(message or f"HTTP {status}")
    lowered = message.lower()
    if error_type == "budget_exceeded" or "budget has been exceeded" in lowered:
        return Failure(FailureKind.BUDGET, detail, status, error_type)
    if (status in (401, 403) or error_type in AUTH_TYPES or "key is blocked" in lowered):
        return Failure(FailureKind.AUTH, detail, status, error_type)
    if status == 429:
        return Failure(FailureKind.RATE_LIMITED, detail, status, error_type,
                       retry_after_seconds(headers))
    if status in (408, 409) or status >= 500:
        return Failure(FailureKind.UNAVAILABLE, detail, status, error_type)
    return Failure(FailureKind.REJECTED, detail, status, error_type)


def classify(error: BaseException) -> Failure:
    """Classify an exception raised while calling the gateway through the SDK."""
    if isinstance(error, openai.APIStatusError):
        return classify_status(error.status_code, error.body, error.response.headers)
    if isinstance(error, openai.APITimeoutError):
        return Failure(FailureKind.UNAVAILABLE, "timed out")
    if isinstance(error, openai.APIConnectionError):
        cause = error.__cause__ or error.__context__
        reason = one_line(f"{type(cause).__name__}: {cause}") if cause else "connection error"
        return Failure(FailureKind.UNAVAILABLE, f"connection failed ({reason})")
    if isinstance(error, openai.APIResponseValidationError | ValueError | TypeError | KeyError
                  | AttributeError):
        return Failure(FailureKind.BAD_RESPONSE, one_line(f"{type(error).__name__}: {error}"))
    if isinstance(error, openai.OpenAIError):
        return Failure(FailureKind.BAD_RESPONSE, one_line(str(error)))
    raise error


def describe(value: Any) -> str:
    """A short, safe rendering of an unexpected value for an error message."""
    return one_line(repr(value), 120)
