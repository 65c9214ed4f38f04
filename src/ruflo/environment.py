"""Where settings come from, without pydantic: each setting's variable names, the config file,
and the precedence (environment, then file, then default). `ruflo.config` validates what this
reads; `quick_store_settings` lets a CLI fast path find the store without importing pydantic.
Depends on the standard library, platformdirs and ruflo.errors.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruflo.errors import ConfigError

FIELD_VARS: dict[str, tuple[str, ...]] = {
    "openai_base_url": ("OPENAI_BASE_URL",),
    "litellm_base_url": ("LITELLM_BASE_URL",),
    "openai_api_key": ("OPENAI_API_KEY",),
    "database_url": ("DATABASE_URL",),
    "data_dir": ("RUFLO_DATA_DIR",),
    "config_file": ("RUFLO_CONFIG",),
    "model": ("RUFLO_MODEL",),
    "task_model": ("TASK_MODEL",),
    "prices": ("RUFLO_PRICES",),
    "lease_seconds": ("RUFLO_LEASE_SECONDS",),
    "gateway_probe_seconds": ("RUFLO_GATEWAY_PROBE_SECONDS",),
    "sqlite_synchronous": ("RUFLO_SQLITE_SYNCHRONOUS",),
    "strict_keys": ("RUFLO_STRICT_KEYS",),
    "auth": ("RUFLO_AUTH",),
    "trusted_proxies": ("RUFLO_TRUSTED_PROXIES",),
    "operators": ("RUFLO_OPERATORS",),
    "workspace": ("RUFLO_WORKSPACE",),
    "telegram_bot_token": ("RUFLO_TELEGRAM_BOT_TOKEN", "FRANK_C2_TELEGRAM_BOT_TOKEN"),
    "telegram_chat_id": ("RUFLO_TELEGRAM_CHAT_ID", "FRANK_C2_TELEGRAM_CHAT_ID"),
    "telegram_credentials_file": ("RUFLO_TELEGRAM_CREDENTIALS_FILE",),
    "telegram_api_base": ("RUFLO_TELEGRAM_API_BASE",),
    "resend_api_key": ("RESEND_API_KEY",),
    "resend_api_base": ("RUFLO_RESEND_API_BASE",),
    "notify_email_from": ("RUFLO_NOTIFY_EMAIL_FROM",),
    "notify_email_to": ("RUFLO_NOTIFY_EMAIL_TO",),
    "webhook_url": ("RUFLO_WEBHOOK_URL",),
    "webhook_secret": ("RUFLO_WEBHOOK_SECRET",),
    "notify_rules": ("RUFLO_NOTIFY_RULES",),
    "notify_dedupe_seconds": ("RUFLO_NOTIFY_DEDUPE_SECONDS",),
    "notify_rate_per_minute": ("RUFLO_NOTIFY_RATE_PER_MINUTE",),
    "shell_inventory": ("RUFLO_SHELL_INVENTORY",),
    "shell_state_dir": ("RUFLO_SHELL_STATE_DIR",),
    "allowed_hosts": ("RUFLO_ALLOWED_HOSTS",),
    "max_body_bytes": ("RUFLO_MAX_BODY_BYTES",),
    "read_timeout_seconds": ("RUFLO_READ_TIMEOUT_SECONDS",),
    "sandbox": ("RUFLO_SANDBOX",),
    "sandbox_read": ("RUFLO_SANDBOX_READ",),
    "relay_address": ("RUFLO_RELAY_ADDRESS",),
}
"""Settings field -> the variables that set it, first one preferred (the one list of them:
ruflo.config.Settings takes its aliases from here)."""

ANY_TEXT_FIELDS = frozenset({
    "openai_base_url", "litellm_base_url", "openai_api_key", "database_url", "data_dir", "model",
    "task_model", "trusted_proxies", "workspace", "telegram_bot_token", "telegram_chat_id",
    "telegram_credentials_file", "telegram_api_base", "resend_api_key", "resend_api_base",
    "notify_email_from", "notify_email_to", "webhook_url", "webhook_secret", "shell_inventory",
    "shell_state_dir",
})
"""Fields that accept any text from the environment (Settings can't refuse it): the fast path
may ignore them. Any other field set in the environment sends the fast path to full validation.
A test checks this against Settings' types."""


def default_data_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir("ruflo", appauthor=False))


def default_config_file() -> Path:
    import platformdirs

    return Path(platformdirs.user_config_dir("ruflo", appauthor=False)) / "config.toml"


def config_path(env: Mapping[str, str]) -> Path | None:
    """The config file in use: RUFLO_CONFIG (which must exist), else the default if present."""
    config_var = env.get("RUFLO_CONFIG", "").strip()
    if config_var:
        path = Path(config_var).expanduser()
        if not path.is_file():
            raise ConfigError(f"RUFLO_CONFIG points to {path}, which is not a file; "
                              "nothing was started")
        return path
    default = default_config_file()
    return default if default.is_file() else None


def read_config_file(path: Path) -> dict[str, Any]:
    import tomllib  # only with a config file: a quick CLI call has none

    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror}; "
                          "fix RUFLO_CONFIG or remove it") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"config file {path} is not valid TOML ({error}); "
                          "nothing was started") from None
    return {str(key).lower(): value for key, value in data.items()}


@dataclass
class Gathered:
    """Raw values before validation, and where each came from."""

    values: dict[str, Any]
    sources: dict[str, str]
    """field -> "env NAME", "file PATH" or "default"."""
    file_values: dict[str, Any]
    config_path: Path | None


def gather(env: Mapping[str, str], *, config: Path | None) -> Gathered:
    """Each field's raw value: the first set variable, else the config file's key."""
    file_values = read_config_file(config) if config else {}
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name, env_names in FIELD_VARS.items():
        for var in env_names:
            if var in env and env[var] != "":
                values[name] = env[var]
                sources[name] = f"env {var}"
                break
        else:
            if name in file_values:
                values[name] = file_values[name]
                sources[name] = f"file {config}"
            else:
                sources[name] = "default"
    if config is not None:
        values["config_file"] = config
    if "data_dir" in values:
        values["data_dir"] = Path(str(values["data_dir"])).expanduser()
    return Gathered(values, sources, file_values, config)


@dataclass(frozen=True)
class StoreSettings:
    """The few settings a quick CLI call needs to open the embedded store."""

    data_dir: Path
    sqlite_synchronous: str

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "ruflo.db"

    @property
    def store_url(self) -> str:
        return f"sqlite:///{self.sqlite_path}"


def quick_store_settings(env: Mapping[str, str] | None = None) -> StoreSettings | None:
    """The embedded store's settings when they can be known without full validation, else None
    (a config file, a Postgres store, or any setting pydantic could refuse is in play: the
    caller then uses ruflo.config.load_settings). Never disagrees with load_settings."""
    env = os.environ if env is None else env
    if env.get("RUFLO_CONFIG", "").strip() or default_config_file().is_file():
        return None
    gathered = gather(env, config=None)
    for name in gathered.values:
        if name not in ANY_TEXT_FIELDS and name != "sqlite_synchronous":
            return None
    if "database_url" in gathered.values:
        return None
    synchronous = str(gathered.values.get("sqlite_synchronous", "normal")).strip().lower()
    if synchronous not in ("normal", "full"):
        return None
    data_dir = gathered.values.get("data_dir")
    return StoreSettings(data_dir if isinstance(data_dir, Path) else default_data_dir(),
                         synchronous)
