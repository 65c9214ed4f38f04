"""Zero frontier keys: what ruflo hands to anything it spawns."""

from __future__ import annotations

import os
import subprocess
import sys

from ruflo.gateway.env import provider_keys_in, spawn_env, withheld_vars

PARENT = {
    "PATH": "/usr/bin:/bin", "HOME": "/home/me", "LANG": "en_US.UTF-8", "TERM": "xterm",
    "GIT_AUTHOR_NAME": "Me", "XDG_SESSION_ID": "3", "TOKENIZERS_PARALLELISM": "false",
    "ANTHROPIC_API_KEY": "sk-ant-1", "GEMINI_API_KEY": "g", "OPENROUTER_API_KEY": "or",
    "GOOGLE_API_KEY": "gg", "AWS_SECRET_ACCESS_KEY": "aws", "AWS_ACCESS_KEY_ID": "id",
    "AWS_SESSION_TOKEN": "t", "GITHUB_TOKEN": "gh", "HF_TOKEN": "hf", "DATABASE_URL":
    "postgresql://u:pw@db/x", "RUFLO_WEBHOOK_SECRET": "w", "MY_SERVICE_PASSWORD": "p",
    "STRIPE_KEY": "s", "SOME_AUTH": "a", "my_lower_api_key": "l",
    "OPENAI_API_KEY": "sk-provider-key-from-parent", "OPENAI_BASE_URL": "https://api.openai.com",
    "ANTHROPIC_BASE_URL": "https://api.anthropic.com",
}


def test_the_spawned_environment_has_no_model_credential_at_all() -> None:
    env = spawn_env(base=PARENT)
    for kept in ("PATH", "HOME", "LANG", "TERM", "GIT_AUTHOR_NAME", "XDG_SESSION_ID",
                 "TOKENIZERS_PARALLELISM"):
        assert env[kept] == PARENT[kept]
    for gone in ("ANTHROPIC_API_KEY", "GEMINI_API_KEY", "OPENROUTER_API_KEY", "GOOGLE_API_KEY",
                 "AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "AWS_SESSION_TOKEN",
                 "GITHUB_TOKEN", "HF_TOKEN", "DATABASE_URL", "RUFLO_WEBHOOK_SECRET",
                 "MY_SERVICE_PASSWORD", "STRIPE_KEY", "SOME_AUTH", "my_lower_api_key",
                 "ANTHROPIC_BASE_URL", "OPENAI_API_KEY", "OPENAI_BASE_URL", "LITELLM_BASE_URL"):
        assert gone not in env, gone
    assert "sk-provider-key-from-parent" not in env.values()


def test_extra_variables_are_the_callers_choice() -> None:
    env = spawn_env(base={}, extra={"RUFLO_TASK_ID": "t1"})
    assert env["RUFLO_TASK_ID"] == "t1"


def test_provider_keys_are_reported() -> None:
    assert provider_keys_in(PARENT) == ["ANTHROPIC_API_KEY", "GEMINI_API_KEY",
                                        "GOOGLE_API_KEY", "HF_TOKEN", "OPENROUTER_API_KEY"]
    assert "OPENAI_API_KEY" not in withheld_vars(PARENT)


def test_a_spawned_process_really_sees_only_that() -> None:
    env = spawn_env(base={**os.environ, "ANTHROPIC_API_KEY": "sk-ant-leak",
                          "OPENAI_API_KEY": "sk-virtual"})
    seen = subprocess.run(
        [sys.executable, "-c", "import os, json; print(json.dumps(dict(os.environ)))"],
        env=env, capture_output=True, text=True, check=True).stdout
    assert "sk-ant-leak" not in seen
    assert "sk-virtual" not in seen
