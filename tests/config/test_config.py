"""Settings: precedence env > file > default, the boot trace, unknown variables, provider keys."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ruflo.config import boot_trace, load_settings
from ruflo.errors import ConfigError


def test_defaults(tmp_path: Path) -> None:
    settings = load_settings({"RUFLO_DATA_DIR": str(tmp_path)})
    assert settings.store_url == f"sqlite:///{tmp_path / 'ruflo.db'}"
    assert settings.gateway_url is None
    assert settings.model == "gpt-4o-mini"
    assert settings.lease_seconds == 60
    assert settings.sqlite_synchronous == "normal"
    assert settings.workspace_dir == tmp_path / "workspace"
    assert settings.shell_state_path == tmp_path / "shell"
    assert settings.sources["model"] == "default"
    assert settings.sources["data_dir"] == "env RUFLO_DATA_DIR"


def test_default_data_dir_is_the_user_data_dir() -> None:
    settings = load_settings({"HOME": "/home/someone"})
    assert settings.data_dir.name == "ruflo"


def test_env_beats_file_beats_default(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('model = "from-file"\ntask_model = "titles"\nlease_seconds = 5\n'
                      'prices = { "m" = { prompt = 1.0, completion = 2.0 } }\nbogus = 1\n')
    settings = load_settings({"RUFLO_CONFIG": str(config), "RUFLO_MODEL": "from-env",
                              "RUFLO_DATA_DIR": str(tmp_path)})
    assert settings.model == "from-env"
    assert settings.sources["model"] == "env RUFLO_MODEL"
    assert settings.task_model == "titles"
    assert settings.sources["task_model"] == f"file {config}"
    assert settings.prices == {"m": {"prompt": 1.0, "completion": 2.0}}
    assert settings.lease_seconds == 5
    assert any("unknown key 'bogus'" in f for f in settings.findings)


def test_gateway_url_prefers_openai_base_url() -> None:
    both = load_settings({"OPENAI_BASE_URL": "http://a:4000", "LITELLM_BASE_URL": "http://b"})
    assert both.gateway_url == "http://a:4000"
    assert both.gateway_url_var == "OPENAI_BASE_URL"
    only = load_settings({"LITELLM_BASE_URL": "http://litellm.litellm.svc:4000"})
    assert only.gateway_url_var == "LITELLM_BASE_URL"
    assert any("LITELLM_BASE_URL" in line for line in boot_trace(only) if "gateway:" in line)


def test_trace_masks_the_password_and_names_sources(tmp_path: Path) -> None:
    settings = load_settings({
        "DATABASE_URL": "postgresql://ruflo:hunter2@db.example:5433/hive",
        "OPENAI_API_KEY": "sk-litellm-virtual-key-1234",
        "RUFLO_WEBHOOK_SECRET": "whsec-very-secret",
        "RUFLO_DATA_DIR": str(tmp_path),
    })
    trace = "\n".join(boot_trace(settings))
    assert "hunter2" not in trace
    assert "virtual-key" not in trace
    assert "very-secret" not in trace
    assert "store: postgresql ruflo@db.example:5433/hive (password ***) (from env DATABASE_URL)" \
        in trace
    assert f"data dir: {tmp_path} (env RUFLO_DATA_DIR)" in trace
    assert "gateway key: set (…1234)" in trace


def test_unknown_ruflo_variables_are_reported() -> None:
    settings = load_settings({"RUFLO_MODLE": "typo", "RUFLO_DEBUG": "1"})
    findings = settings.findings
    assert any("RUFLO_MODLE" in f for f in findings)
    assert not any("RUFLO_DEBUG" in f for f in findings)


def test_provider_keys_are_findings_and_fatal_when_strict() -> None:
    env = {"ANTHROPIC_API_KEY": "a", "OPENROUTER_API_KEY": "b", "GEMINI_API_KEY": ""}
    findings = load_settings(env).findings
    assert sum("direct provider key" in f for f in findings) == 2
    with pytest.raises(ConfigError, match="ANTHROPIC_API_KEY, OPENROUTER_API_KEY"):
        load_settings({**env, "RUFLO_STRICT_KEYS": "1"})
    assert load_settings({"RUFLO_STRICT_KEYS": "1"}).strict_keys


@pytest.mark.parametrize(("env", "expected"), [
    ({"RUFLO_LEASE_SECONDS": "soon"}, "lease_seconds (env RUFLO_LEASE_SECONDS)"),
    ({"RUFLO_PRICES": "{not json"}, "prices"),
    ({"RUFLO_SQLITE_SYNCHRONOUS": "off"}, "sqlite_synchronous"),
    ({"RUFLO_CONFIG": "/no/such/file.toml"}, "not a file"),
])
def test_invalid_values_name_the_setting_and_source(env: dict[str, str], expected: str) -> None:
    with pytest.raises(ConfigError, match="nothing was started") as caught:
        load_settings(env)
    assert expected in str(caught.value)


def test_telegram_fallback_names_and_lists(tmp_path: Path) -> None:
    settings = load_settings({"FRANK_C2_TELEGRAM_BOT_TOKEN": "123:abc",
                              "FRANK_C2_TELEGRAM_CHAT_ID": "42",
                              "RUFLO_TRUSTED_PROXIES": "10.0.0.0/8, 127.0.0.1",
                              "RUFLO_SQLITE_SYNCHRONOUS": "FULL"})
    assert settings.telegram_bot_token is not None
    assert settings.telegram_bot_token.get_secret_value() == "123:abc"
    assert settings.telegram_chat_id == "42"
    assert settings.sources["telegram_chat_id"] == "env FRANK_C2_TELEGRAM_CHAT_ID"
    assert settings.trusted_proxies == ["10.0.0.0/8", "127.0.0.1"]
    assert settings.sqlite_synchronous == "full"


def test_bad_toml_is_a_clear_error(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("model = ")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings({"RUFLO_CONFIG": str(config)})


def run_doctor(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", "from ruflo.cli import main; main()", "doctor",
                           *args], env=env, capture_output=True, text=True, timeout=60,
                          check=False)


def clean_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("RUFLO_") and k not in ("DATABASE_URL", "OPENAI_BASE_URL",
                                                       "LITELLM_BASE_URL")}
    env["RUFLO_DATA_DIR"] = str(tmp_path / "data")
    env["HOME"] = str(tmp_path)
    return env


@pytest.mark.integration
def test_doctor_prints_trace_and_checks_the_store_and_gateway(tmp_path: Path) -> None:
    from ruflo.gateway.scripted import ScriptedGateway

    env = clean_env(tmp_path)
    env["OPENAI_API_KEY"] = "sk-doctor"
    with ScriptedGateway({"keys": ["sk-doctor"], "default": {"content": "ok"}}) as base_url:
        env["OPENAI_BASE_URL"] = base_url
        done = run_doctor(env)
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"store: sqlite {tmp_path / 'data' / 'ruflo.db'}" in done.stdout
        assert f"gateway: {base_url} (from OPENAI_BASE_URL" in done.stdout
        assert "ok   store:" in done.stdout
        assert "ok   gateway:" in done.stdout
        report = json.loads(run_doctor(env, "--json").stdout)
        assert report["ok"]
        assert report["checks"][0]["name"] == "store"
        assert {c["name"]: c["ok"] for c in report["checks"]}["gateway"] is True


@pytest.mark.integration
def test_doctor_fails_when_the_gateway_refuses_the_key_or_is_down(tmp_path: Path) -> None:
    from ruflo.gateway.scripted import ScriptedGateway

    env = clean_env(tmp_path)
    env["OPENAI_API_KEY"] = "sk-provider-key"
    with ScriptedGateway({"keys": ["sk-virtual"], "default": {"content": "ok"}}) as base_url:
        env["OPENAI_BASE_URL"] = base_url
        refused = run_doctor(env)
    assert refused.returncode == 1
    assert "FAIL gateway:" in refused.stdout
    assert "virtual key" in refused.stdout
    env["OPENAI_BASE_URL"] = "http://127.0.0.1:1"
    down = run_doctor(env)
    assert down.returncode == 1
    assert "FAIL gateway: http://127.0.0.1:1" in down.stdout


@pytest.mark.integration
def test_doctor_fails_on_unreachable_database_url(tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    env["DATABASE_URL"] = "postgresql://ruflo:pw@127.0.0.1:1/hive"
    done = run_doctor(env)
    assert done.returncode == 1
    assert "FAIL store: cannot reach Postgres at 127.0.0.1:1/hive" in done.stdout
    assert not (tmp_path / "data").exists(), "no SQLite fallback was created"


@pytest.mark.integration
def test_doctor_refuses_a_corrupt_store(tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "ruflo.db").write_bytes(b"garbage" * 100)
    done = run_doctor(env)
    assert done.returncode == 1
    assert "left the file untouched" in done.stdout
    assert (tmp_path / "data" / "ruflo.db").read_bytes() == b"garbage" * 100


def test_operators_are_a_comma_separated_list_of_user_names() -> None:
    settings = load_settings({"RUFLO_OPERATORS": " ada, olga ,,", "RUFLO_CONFIG": ""})
    assert settings.operators == ["ada", "olga"]
    assert load_settings({"RUFLO_CONFIG": ""}).operators == []
    with pytest.raises(ConfigError, match=r"operators .*is not a user name"):
        load_settings({"RUFLO_OPERATORS": "ada,bad\x07name", "RUFLO_CONFIG": ""})
