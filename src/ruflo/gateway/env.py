"""The environment for anything ruflo spawns: no model credential of any kind.

Depends on ruflo.config only. Zero keys: not the providers', not the gateway's. An agent CLI
ruflo starts reaches a model through the model relay with a token for its attempt (added by the
process adapter, see gateway.relay); commands get nothing; every other credential-looking
variable of ruflo's own environment is left out.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from ruflo.config import PROVIDER_KEY_VARS

__all__ = ["GATEWAY_VARS", "provider_keys_in", "spawn_env", "withheld_vars"]

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


def spawn_env(*, base: Mapping[str, str] | None = None,
              extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a spawned process: `base` (default: ruflo's own environment)
    without credentials and without the gateway's variables (URL and key: the gateway key stays
    in ruflo), plus `extra` (which is trusted: it is the caller's own choice)."""
    source = dict(os.environ if base is None else base)
    dropped = set(withheld_vars(source)) | set(GATEWAY_VARS)
    env = {name: value for name, value in source.items() if name not in dropped}
    env.setdefault("PATH", os.defpath)
    env.setdefault("LANG", "C.UTF-8")
    if extra:
        env.update(extra)
    return env
