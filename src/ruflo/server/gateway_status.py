"""Gateway trouble put in words for the API and the page banner: which kind of trouble and what
to do. Depends on the error tree only.
"""

from __future__ import annotations

from dataclasses import dataclass

from ruflo.errors import (
    GatewayAuthError,
    GatewayBadResponse,
    GatewayBudgetError,
    GatewayRateLimited,
    GatewayUnavailable,
)


@dataclass(frozen=True, slots=True)
class GatewayState:
    status: str
    """ok, unconfigured, refused, budget, rate_limited, unreachable, bad_response, timeout,
    unknown."""
    message: str | None = None


UNCONFIGURED = GatewayState(
    "unconfigured", "no gateway is configured: set OPENAI_BASE_URL (or LITELLM_BASE_URL) and "
                    "OPENAI_API_KEY, then restart")
TIMEOUT = GatewayState(
    "timeout", "the gateway did not answer in time; ruflo will ask again on the next request")


def describe_gateway_error(error: BaseException) -> GatewayState:
    detail = str(error).strip()
    if isinstance(error, GatewayAuthError):
        return GatewayState("refused", detail or (
            "the gateway refused the key in OPENAI_API_KEY; behind LiteLLM it must be a "
            "LiteLLM virtual key, not a provider key"))
    if isinstance(error, GatewayBudgetError):
        return GatewayState("budget", detail or "the gateway's budget for this key is spent")
    if isinstance(error, GatewayRateLimited):
        return GatewayState("rate_limited", detail or "the gateway is rate-limiting this key")
    if isinstance(error, GatewayUnavailable):
        return GatewayState("unreachable", detail or "the gateway can't be reached")
    if isinstance(error, GatewayBadResponse):
        return GatewayState("bad_response", detail or "the gateway's answer was not understood")
    if isinstance(error, TimeoutError):
        return TIMEOUT
    return GatewayState("unknown", detail or type(error).__name__)
