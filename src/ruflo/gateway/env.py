"""The environment for anything ruflo spawns: the gateway's variables and no provider keys.

Depends on ruflo.config only. Zero frontier keys: a spawned agent CLI or command reaches a model
through the gateway (its URL and virtual key) or not at all; every other credential-looking
variable of ruflo's own environment is left out.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

from ruflo.config import PROVIDER_KEY_VARS

if TYPE_CHECKING:
    from ruflo.config import Settings

__all__ = ["GATEWAY_VARS", "gateway_env", "provider_keys_in", "withheld_vars"]

GATEWAY_VARS = ("OPENAI_BASE_URL", "LITELLM_BASE_URL", "OPENAI_API_KEY")

SECRET_NAME = re.compile(
    r"(_API_KEY|_KEY$|_KEY_ID$|_ACCESS_KEY|_PRIVATE_KEY|_TOKEN$|_TOKEN_|SECRET|PASSWORD|PASSWD"
    r"|CREDENTIAL|_AUTH(_|$)|COOKIE)", re.IGNORECASE)
"""Names that look like they carry a credential."""

WITHHELD = frozenset({
    *PROVIDER_KEY_VARS, "DATABASE_URL", "GOOGLE_APPLICATION_CREDENTIALS", "OPENAI_ORG_ID",
    "OPENAI_ORGANIZATION", "OPENAI_PROJECT_ID", "OPENAI_API_BASE", "ANTHROPIC_BASE_URL",
    "AZURE_OPENAI_ENDPOINT", "PGPASSWORD", "PGPASSFILE", "SSH_AUTH_SOCK", "NETRC",
})
"""Named variables never passed on, whatever their name looks like."""


def withheld_vars(environ: Mapping[str, str]) -> list[str]:
    """The names of `environ` a spawned process must not see."""
    return sorted(name for name in environ
                  if name not in GATEWAY_VARS
                  and (name in WITHHELD or name.upper() in WITHHELD or SECRET_NAME.search(name)))


def provider_keys_in(environ: Mapping[str, str] | None = None) -> list[str]:
    """Provider keys present in an environment: findings to report (they bypass the gateway)."""
    env = os.environ if environ is None else environ
    return sorted(name for name in PROVIDER_KEY_VARS if env.get(name))


def gateway_env(settings: Settings, *, base: Mapping[str, str] | None = None,
                extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a spawned process: `base` (default: ruflo's own environment)
    without credentials, plus the gateway's URL (as OPENAI_BASE_URL and LITELLM_BASE_URL) and
    key, plus `extra` (which is trusted: it is the caller's own choice)."""
    source = dict(os.environ if base is None else base)
    dropped = set(withheld_vars(source)) | set(GATEWAY_VARS)
    env = {name: value for name, value in source.items() if name not in dropped}
    url = settings.gateway_url
    if url:
        env["OPENAI_BASE_URL"] = url
        env["LITELLM_BASE_URL"] = settings.litellm_base_url or url
    if settings.openai_api_key is not None:
        env["OPENAI_API_KEY"] = settings.openai_api_key.get_secret_value()
    env.setdefault("PATH", os.defpath)
    env.setdefault("LANG", "C.UTF-8")
    if extra:
        env.update(extra)
    return env
