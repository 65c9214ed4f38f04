"""Settings from the environment and an optional TOML file, with a boot trace that says which
store, gateway and data directory are in use and where each value came from.

Depends on pydantic and platformdirs (imported here only; keep it out of ruflo/__init__ and
model). The environment and the file are read here, not by pydantic-settings, whose import alone
costs ~250 ms of CPU on every CLI call.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
)

from ruflo import telemetry
from ruflo.environment import (
    FIELD_VARS,
    config_path,
    default_config_file,
    default_data_dir,
    gather,
)
from ruflo.errors import ConfigError

__all__ = ["KNOWN_RUFLO_VARS", "PROVIDER_KEY_VARS", "Settings", "boot_trace",
           "default_config_file", "default_data_dir", "describe_store", "load_settings",
           "mask_url"]

PROVIDER_KEY_VARS = (
    "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY", "OPENROUTER_API_KEY",
    "MISTRAL_API_KEY", "GROQ_API_KEY", "COHERE_API_KEY", "CO_API_KEY", "DEEPSEEK_API_KEY",
    "TOGETHER_API_KEY", "TOGETHERAI_API_KEY", "XAI_API_KEY", "FIREWORKS_API_KEY",
    "PERPLEXITYAI_API_KEY", "PERPLEXITY_API_KEY", "AZURE_OPENAI_API_KEY", "AZURE_API_KEY",
    "HUGGINGFACE_API_KEY", "HF_TOKEN", "REPLICATE_API_TOKEN", "VOYAGE_API_KEY",
    "AI21_API_KEY", "CEREBRAS_API_KEY", "NVIDIA_NIM_API_KEY", "AWS_BEARER_TOKEN_BEDROCK",
)
"""Keys that let a process reach an LLM provider directly, around the gateway (the kill switch)."""

KNOWN_RUFLO_VARS = frozenset({"RUFLO_DEBUG", "RUFLO_REQUIRE_POSTGRES"})
"""RUFLO_* variables read outside Settings (the CLI's debug switch, the test suite's flag)."""


def _env(field: str) -> Any:
    return AliasChoices(*FIELD_VARS[field])


class Settings(BaseModel):
    """Every setting ruflo reads. Build it with `load_settings()`, which reads the environment
    and the config file and records the value sources and findings the boot trace reports;
    `Settings(**values)` alone validates the values given (by field name or variable name)."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore", frozen=True)

    openai_base_url: str | None = Field(None, validation_alias=_env("openai_base_url"))
    litellm_base_url: str | None = Field(None, validation_alias=_env("litellm_base_url"))
    openai_api_key: SecretStr | None = Field(None, validation_alias=_env("openai_api_key"))
    database_url: str | None = Field(None, validation_alias=_env("database_url"))
    """None means the embedded SQLite store at <data_dir>/ruflo.db."""
    data_dir: Path = Field(default_factory=default_data_dir, validation_alias=_env("data_dir"))
    config_file: Path | None = Field(None, validation_alias=_env("config_file"))
    model: str = Field("gpt-4o-mini", validation_alias=_env("model"))
    task_model: str | None = Field(None, validation_alias=_env("task_model"))
    prices: dict[str, dict[str, float]] = Field(default_factory=dict,
                                                validation_alias=_env("prices"))
    """model -> {"prompt": USD per 1M tokens, "completion": USD per 1M tokens}."""
    lease_seconds: float = Field(60.0, gt=0, validation_alias=_env("lease_seconds"))
    gateway_probe_seconds: float = Field(30.0, gt=0,
                                         validation_alias=_env("gateway_probe_seconds"))
    """Longest wait between two looks at a gateway that stopped answering (a hive paused
    "gateway unreachable"); the first look comes after a second, or this if shorter."""
    sqlite_synchronous: Literal["normal", "full"] = Field(
        "normal", validation_alias=_env("sqlite_synchronous"))
    strict_keys: bool = Field(False, validation_alias=_env("strict_keys"))
    auth: Literal["none", "forward", "token"] = Field("none", validation_alias=_env("auth"))
    trusted_proxies: list[str] = Field(default_factory=list,
                                       validation_alias=_env("trusted_proxies"))
    operators: list[str] = Field(default_factory=list, validation_alias=_env("operators"))
    """Users who may define commands (process/http agents, verify) and change any hive over
    HTTP; tokens made with `--scope operator` count too. With RUFLO_AUTH=none the one local user
    is an operator."""
    workspace: Path | None = Field(None, validation_alias=_env("workspace"))
    """None means <data_dir>/workspace (see `workspace_dir`)."""
    telegram_bot_token: SecretStr | None = Field(
        None, validation_alias=_env("telegram_bot_token"))
    telegram_chat_id: str | None = Field(
        None, validation_alias=_env("telegram_chat_id"))
    telegram_credentials_file: Path | None = Field(
        None, validation_alias=_env("telegram_credentials_file"))
    telegram_api_base: str = Field("https://api.telegram.org",
                                   validation_alias=_env("telegram_api_base"))
    resend_api_key: SecretStr | None = Field(None, validation_alias=_env("resend_api_key"))
    resend_api_base: str = Field("https://api.resend.com",
                                 validation_alias=_env("resend_api_base"))
    notify_email_from: str | None = Field(None, validation_alias=_env("notify_email_from"))
    notify_email_to: str | None = Field(None, validation_alias=_env("notify_email_to"))
    webhook_url: str | None = Field(None, validation_alias=_env("webhook_url"))
    webhook_secret: SecretStr | None = Field(None, validation_alias=_env("webhook_secret"))
    notify_rules: dict[str, Any] | None = Field(None, validation_alias=_env("notify_rules"))
    notify_dedupe_seconds: float = Field(600.0, ge=0,
                                         validation_alias=_env("notify_dedupe_seconds"))
    notify_rate_per_minute: int = Field(20, ge=1,
                                        validation_alias=_env("notify_rate_per_minute"))
    shell_inventory: Path = Field(Path("/etc/ruflo-shell/inventory.yaml"),
                                  validation_alias=_env("shell_inventory"))
    shell_state_dir: Path | None = Field(None, validation_alias=_env("shell_state_dir"))
    """None means <data_dir>/shell (see `shell_state_path`)."""
    allowed_hosts: list[str] = Field(default_factory=list,
                                     validation_alias=_env("allowed_hosts"))
    """Host names the web server answers besides the loopback ones (the public names behind a
    proxy), each optionally with :port; "*" answers any."""
    max_body_bytes: int = Field(1024 * 1024, ge=1024, le=1024**3,
                                validation_alias=_env("max_body_bytes"))
    """The largest request body the web server reads; longer ones get 413, unread."""
    read_timeout_seconds: float = Field(15.0, gt=0, le=3600,
                                        validation_alias=_env("read_timeout_seconds"))
    """A request's head, and then its body, must each arrive within this time."""
    sandbox: Literal["auto", "bwrap", "off"] = Field("auto", validation_alias=_env("sandbox"))
    """How agents' commands and verify are confined (ruflo.agents.sandbox): auto = bubblewrap
    where it works, else commands are refused; off = unconfined, on the operator's word."""
    sandbox_read: list[Path] = Field(default_factory=list,
                                     validation_alias=_env("sandbox_read"))
    """More folders shown read-only inside the sandbox (colon-separated, like PATH)."""
    relay_address: str = Field("127.0.0.1:0", validation_alias=_env("relay_address"))
    """Where the model relay listens (host:port; port 0: any free one). Loopback by default;
    the seed's pod sets 127.0.0.1:4001, the pod's shared loopback (docs/relay.md)."""

    _sources: dict[str, str] = PrivateAttr(default_factory=dict)
    _findings: list[str] = PrivateAttr(default_factory=list)

    @field_validator("prices", "notify_rules", mode="before")
    @classmethod
    def _json_text(cls, value: Any) -> Any:
        if isinstance(value, str):
            if not value.strip():
                return None
            try:
                return json.loads(value)
            except json.JSONDecodeError as error:
                raise ValueError(f"not valid JSON ({error.msg} at char {error.pos})") from None
        return value

    @field_validator("trusted_proxies", "operators", "allowed_hosts", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("operators")
    @classmethod
    def _user_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if len(name) > 200 or any(ord(c) < 32 for c in name):
                raise ValueError(f"{name[:40]!r} is not a user name (control characters or "
                                 "longer than 200)")
        return value

    @field_validator("allowed_hosts")
    @classmethod
    def _host_names(cls, value: list[str]) -> list[str]:
        for entry in value:
            if entry != "*" and not re.fullmatch(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?",
                                                 entry):
                raise ValueError(f"{entry!r} is not a host name with an optional :port (no "
                                 "scheme, path or spaces; \"*\" for any host)")
        return [entry.lower() for entry in value]

    @field_validator("sandbox_read", mode="before")
    @classmethod
    def _path_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(os.pathsep) if part.strip()]
        return value

    @field_validator("sqlite_synchronous", "auth", "sandbox", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    # -- derived values ----------------------------------------------------------------------
    @property
    def gateway_url(self) -> str | None:
        return self.openai_base_url or self.litellm_base_url or None

    @property
    def gateway_url_var(self) -> str | None:
        """Which variable the gateway URL came from."""
        if self.openai_base_url:
            return "OPENAI_BASE_URL"
        if self.litellm_base_url:
            return "LITELLM_BASE_URL"
        return None

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "ruflo.db"

    @property
    def store_url(self) -> str:
        """The database URL actually used: DATABASE_URL, else the embedded SQLite file."""
        return self.database_url or f"sqlite:///{self.sqlite_path}"

    @property
    def workspace_dir(self) -> Path:
        return self.workspace or self.data_dir / "workspace"

    @property
    def shell_state_path(self) -> Path:
        return self.shell_state_dir or self.data_dir / "shell"

    @property
    def sources(self) -> dict[str, str]:
        """field name -> "env NAME", "file PATH" or "default"."""
        return dict(self._sources)

    @property
    def findings(self) -> list[str]:
        """Things a person should know about this configuration (unknown variables, keys)."""
        return list(self._findings)


def _field_env_names() -> dict[str, tuple[str, ...]]:
    return FIELD_VARS


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read settings from `env` (default: the process environment) and the config file.

    Precedence: environment, then config file, then default. Raises ConfigError for invalid
    values, and when RUFLO_STRICT_KEYS is on and a direct provider key is in the environment.
    """
    env = dict(os.environ if env is None else env)
    fields = _field_env_names()
    findings: list[str] = []
    config = config_path(env)
    gathered = gather(env, config=config)
    values, sources = gathered.values, gathered.sources
    for key in sorted(set(gathered.file_values) - set(fields)):
        findings.append(f"unknown key {key!r} in config file {config} (ignored)")

    try:
        settings = Settings(**values)
    except ValidationError as error:
        problems = []
        for item in error.errors():
            field = str(item["loc"][0]) if item["loc"] else "?"
            where = sources.get(field, "default")
            problems.append(f"{field} ({where}): {item['msg']}")
        raise ConfigError("invalid settings: " + "; ".join(problems)
                          + "; nothing was started") from None

    known = {var for names in fields.values() for var in names} | KNOWN_RUFLO_VARS
    for var in sorted(env):
        if var.startswith("RUFLO_") and var not in known:
            findings.append(f"unknown variable {var} in the environment (ignored; a typo?)")
    provider_keys = [var for var in PROVIDER_KEY_VARS if env.get(var)]
    for var in provider_keys:
        findings.append(f"direct provider key {var} in the environment: ruflo talks to LLMs "
                        "only through the gateway; unset it so revoking the gateway key stops "
                        "all inference")
    if provider_keys and settings.strict_keys:
        raise ConfigError(f"direct provider keys in the environment ({', '.join(provider_keys)}) "
                          "and RUFLO_STRICT_KEYS is on: nothing was started; unset them and "
                          "reach models through the gateway (OPENAI_BASE_URL)")
    settings._sources.update(sources)
    settings._findings.extend(findings)
    return settings


def mask_url(url: str) -> str:
    """The URL with its password replaced by ***."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def describe_store(settings: Settings) -> str:
    """One line naming the store in use: SQLite path, or Postgres host/db (password masked)."""
    if not settings.database_url:
        return f"sqlite {settings.sqlite_path}"
    parts = urlsplit(settings.database_url)
    host = parts.hostname or "localhost"
    port = f":{parts.port}" if parts.port else ""
    database = parts.path.lstrip("/") or "(default database)"
    user = f"{parts.username}@" if parts.username else ""
    password = " (password ***)" if parts.password else ""
    return f"{parts.scheme} {user}{host}{port}/{database}{password}"


def _secret_text(value: SecretStr | None) -> str:
    if value is None:
        return "not set"
    raw = value.get_secret_value()
    return f"set (…{raw[-4:]})" if len(raw) >= 12 else "set"


def boot_trace(settings: Settings) -> list[str]:
    """Lines for `ruflo doctor` and long-running commands: what is actually in use, and why."""
    sources = settings.sources
    lines = []
    store_source = sources.get("database_url", "default")
    if settings.database_url:
        lines.append(f"store: {describe_store(settings)} (from {store_source})")
    else:
        lines.append(f"store: {describe_store(settings)} (DATABASE_URL not set; data dir from "
                     f"{sources.get('data_dir', 'default')})")
    if settings.gateway_url:
        var = settings.gateway_url_var or ""
        field = "openai_base_url" if var == "OPENAI_BASE_URL" else "litellm_base_url"
        lines.append(f"gateway: {settings.gateway_url} (from {var}, "
                     f"{sources.get(field, 'default')})")
    else:
        lines.append("gateway: not configured (set OPENAI_BASE_URL or LITELLM_BASE_URL)")
    lines.append(f"gateway key: {_secret_text(settings.openai_api_key)}"
                 f" ({sources.get('openai_api_key', 'default')})")
    relay = settings.relay_address
    if relay.endswith(":0"):
        relay = f"{relay[:-2]}, a free port chosen at start"
    lines.append(f"model relay: {relay} (agents reach models here with a token per attempt; "
                 f"{sources.get('relay_address', 'default')})")
    lines.append(f"data dir: {settings.data_dir} ({sources.get('data_dir', 'default')})")
    lines.append(f"isolation: git worktrees by default (a hive's folder made under "
                 f"{settings.workspace_dir} becomes a repository; a folder given must be one, "
                 "or isolation none be asked for)")
    lines.append(f"config file: {settings.config_file or 'none'}")
    for name in Settings.model_fields:
        if name in ("database_url", "openai_base_url", "litellm_base_url", "openai_api_key",
                    "data_dir", "config_file"):
            continue
        value = getattr(settings, name)
        if isinstance(value, SecretStr) or name.endswith(("_token", "_secret", "_api_key")):
            shown = _secret_text(value)
        elif name == "workspace":
            shown = str(settings.workspace_dir)
        elif name == "shell_state_dir":
            shown = str(settings.shell_state_path)
        else:
            shown = (json.dumps(value, default=str) if isinstance(value, dict | list)
                     else str(value))
        lines.append(f"  {name} = {shown} ({sources.get(name, 'default')})")
    lines.extend(f"finding: {finding}" for finding in settings.findings)
    lines.append(telemetry.describe())
    return lines
