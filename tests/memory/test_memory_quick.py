"""The quick road of `ruflo memory store/search` agrees with the typer command: same output, same
notes stored; anything it does not recognise (help, bad values, settings needing validation)
goes to typer; and it never imports typer or pydantic."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main

from ruflo.commands import memory as memory_command
from ruflo.commands import memory_quick
from ruflo.config import Settings, load_settings
from ruflo.environment import ANY_TEXT_FIELDS, FIELD_VARS, quick_store_settings


@pytest.fixture
def data_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for var in [v for v in os.environ if v.startswith("RUFLO_")] + ["DATABASE_URL"]:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("RUFLO_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    return tmp_path / "data"


def typer_run(args: list[str]) -> int:
    command = typer.main.get_command(memory_command.app)
    try:
        command.main(args=args, prog_name="ruflo memory", standalone_mode=True)
    except SystemExit as done:
        return int(done.code or 0)
    return 0


CALLS = [
    ["store", "k1", "Deploy with the manifests in deploy/k8s"],
    ["store", "k2", "Budgets stop the agent at its cap", "-t", "budget", "--tag", "money"],
    ["store", "k3", "notes in another namespace", "-n", "team", "--json"],
    ["search", "manifests"],
    ["search", "budget cap", "--keyword", "--json"],
    ["search", "notes", "-n", "team", "-l", "1"],
    ["search", "nothing matches zzzz", "--keyword"],
]


def test_both_roads_print_the_same_and_store_the_same(data_env: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    quick_out = []
    for args in CALLS:
        assert memory_quick.run(args) == 0, args
        quick_out.append(capsys.readouterr())
    quick_notes = (data_env / "ruflo.db").read_bytes()
    assert quick_notes
    (data_env / "ruflo.db").rename(data_env / "quick.db")
    for suffix in ("-wal", "-shm"):
        (data_env / f"ruflo.db{suffix}").unlink(missing_ok=True)
    for args, quick in zip(CALLS, quick_out, strict=True):
        assert typer_run(args) == 0, args
        slow = capsys.readouterr()
        assert _stable(slow.out) == _stable(quick.out), args
        assert slow.err == quick.err, args


def _stable(text: str) -> str:
    """Output with the store's timestamps (which differ between the two runs) taken out."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return text
    items = value if isinstance(value, list) else [value]
    for item in items:
        item.pop("created_at", None)
        item.pop("updated_at", None)
    return json.dumps(value)


@pytest.mark.parametrize("args", [
    ["store", "k"], ["store", "k", "v", "extra"], ["search"], ["search", "q", "--help"],
    ["search", "q", "-l", "0"], ["search", "q", "-l", "1001"], ["search", "q", "-l", "x"],
    ["search", "q", "--limit=3"], ["store", "k", "v", "-l", "3"], ["store", "k", "v", "--keyword"],
    ["search", "q", "-n"], ["search", "q", "-n", "--json"], ["list"], ["delete", "k"],
    ["store", "--", "k", "v"], ["search", "-x"], [],
])
def test_anything_unusual_goes_to_typer(args: list[str]) -> None:
    assert memory_quick.parse(args) is None


def test_recognised_calls_parse_as_typer_reads_them() -> None:
    call = memory_quick.parse(["store", "k", "-", "-t", "a", "-n", "ns", "-t", "b", "--json"])
    assert call is not None
    assert (call.positionals, call.namespace, call.tags, call.as_json) == (
        ["k", "-"], "ns", ["a", "b"], True)
    call = memory_quick.parse(["search", "--keyword", "q w", "--limit", "1000"])
    assert call is not None
    assert (call.positionals, call.keyword, call.limit) == (["q w"], True, 1000)


def test_settings_that_need_validating_send_the_call_to_the_full_loader(
        data_env: Path, tmp_path: Path) -> None:
    base = {"RUFLO_DATA_DIR": str(data_env), "HOME": str(tmp_path),
            "XDG_CONFIG_HOME": str(tmp_path / "config")}
    quick = quick_store_settings(base)
    assert quick is not None
    full = load_settings(base)
    assert (quick.data_dir, quick.store_url, quick.sqlite_synchronous) == (
        full.data_dir, full.store_url, full.sqlite_synchronous)
    agreeing = {**base, "RUFLO_SQLITE_SYNCHRONOUS": " FULL ", "OPENAI_BASE_URL": "http://x",
                "RUFLO_MODEL": "m", "RUFLO_TRUSTED_PROXIES": "10.0.0.0/8"}
    quick = quick_store_settings(agreeing)
    assert quick is not None
    full = load_settings(agreeing)
    assert (quick.data_dir, quick.store_url, quick.sqlite_synchronous) == (
        full.data_dir, full.store_url, full.sqlite_synchronous)
    for var, value in [("RUFLO_LEASE_SECONDS", "abc"), ("RUFLO_SQLITE_SYNCHRONOUS", "off"),
                       ("RUFLO_STRICT_KEYS", "1"), ("RUFLO_PRICES", "{"),
                       ("DATABASE_URL", "postgresql://x/y"), ("RUFLO_AUTH", "token")]:
        assert quick_store_settings({**base, var: value}) is None, var
    config = tmp_path / "ruflo.toml"
    config.write_text('data_dir = "/elsewhere"\n')
    assert quick_store_settings({**base, "RUFLO_CONFIG": str(config)}) is None


def test_the_variable_table_is_the_one_settings_use() -> None:
    from pydantic import AliasChoices

    assert list(FIELD_VARS) == list(Settings.model_fields)
    for name, info in Settings.model_fields.items():
        alias = info.validation_alias
        assert isinstance(alias, AliasChoices)
        assert tuple(alias.choices) == FIELD_VARS[name]


def test_fields_the_quick_road_ignores_accept_any_text() -> None:
    """Settings could refuse no text in these fields; were one to gain a type or a constraint,
    the quick road would wrongly let a bad value pass."""
    for name in ANY_TEXT_FIELDS:
        info = Settings.model_fields[name]
        assert not info.metadata, name
        assert not any(name in getattr(d.info, "fields", ()) for d in
                       Settings.__pydantic_decorators__.field_validators.values()
                       if name != "trusted_proxies"), name
        value = "  any text: {not json} ,, 0 -1 é"
        Settings(**{name: value})  # raises if the field refused it


@pytest.mark.integration
def test_a_quick_call_imports_neither_typer_nor_pydantic(data_env: Path) -> None:
    code = ("import sys; from ruflo.cli import run; "
            "assert run(['memory', 'store', 'k', 'v']) == 0; "
            "assert run(['memory', 'search', 'v', '--keyword']) == 0; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('typer', 'pydantic', 'sqlalchemy', 'fastapi')))")
    create = "from ruflo.cli import run; assert run(['memory', 'store', 'k0', 'v']) == 0"
    subprocess.run([sys.executable, "-c", create], env=os.environ.copy(), timeout=60,
                   check=True, capture_output=True)  # creating the store needs Alembic
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=os.environ.copy(), timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
