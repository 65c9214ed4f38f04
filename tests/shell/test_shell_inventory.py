"""Reading inventory.yaml: the seed's file works; every mistake is an error naming its line."""

from __future__ import annotations

from pathlib import Path

import pytest

from ruflo.errors import ShellError
from ruflo.shell import load_inventory, parse_inventory

SEED = """\
mise:        [python@3.12, node@20, rust@stable]   # runtimes first: others depend on them
npm-global:  ["claude-flow@alpha", "@openai/codex"]
pipx:        [black, ruff]
cargo:       [ripgrep, eza]
removed:                                            # the only way to uninstall
  mise: []
  npm-global: []
  pipx: []
  cargo: []
"""


def test_the_seed_inventory_parses() -> None:
    inventory = parse_inventory(SEED, Path("inventory.yaml"))
    mise, _ = inventory.entries("mise")
    assert [(s.name, s.version) for s in mise] == [("python", "3.12"), ("node", "20"),
                                                   ("rust", "stable")]
    npm, _ = inventory.entries("npm-global")
    assert [(s.name, s.version) for s in npm] == [("claude-flow", "alpha"),
                                                  ("@openai/codex", None)]
    assert inventory.size == 9


def test_specs_are_understood_per_manager() -> None:
    inventory = parse_inventory(
        "npm-global: ['@openai/codex@1.2', is-number@7.0.0]\n"
        "pipx: ['Black==24.1', 'ruff[lsp]>=0.5']\ncargo: [ripgrep@14.1.0]\n", Path("i.yaml"))
    codex, is_number = inventory.wanted["npm-global"]
    assert (codex.name, codex.version) == ("@openai/codex", "1.2")
    assert (is_number.name, is_number.version) == ("is-number", "7.0.0")
    black, ruff = inventory.wanted["pipx"]
    assert (black.name, black.version, black.raw) == ("black", "==24.1", "Black==24.1")
    assert (ruff.name, ruff.version) == ("ruff", ">=0.5")
    assert inventory.wanted["cargo"][0].version == "14.1.0"


@pytest.mark.parametrize(("text", "message"), [
    ("mise: [node@20]\nbrew: [wget]\n", "line 2: unknown section 'brew'"),
    ("removed:\n  apt: [vim]\n", "line 2: unknown section 'apt' under removed:"),
    ("pipx:\n  - black\n  - 'black==='\n", "line 3: pipx entry 'black===' is not valid"),
    ("npm-global:\n  - Bad Name\n", "line 2: npm-global entry 'Bad Name' is not valid"),
    ("mise:\n  - 3.12\n", "line 2: mise entry '3.12' must be a name in text"),
    ("cargo:\n  - {ripgrep: 14}\n", "line 2: cargo entry 'a nested block'"),
    ("pipx: black\n", "line 1: pipx must be a list"),
    ("pipx: [black]\npipx: [ruff]\n", "line 2: section 'pipx' appears twice"),
    ("pipx: [black, Black==24.1]\n", "lists 'black' twice"),
    ("cargo: [eza]\nremoved:\n  cargo: [eza]\n", "line 3: cargo:eza is listed under removed:"),
    ("mise: [node@20\n", "not valid YAML"),
    ("- node@20\n", "line 1: expected sections"),
])
def test_mistakes_name_the_line_and_change_nothing(text: str, message: str) -> None:
    with pytest.raises(ShellError, match="nothing was changed") as caught:
        parse_inventory(text, Path("inventory.yaml"))
    assert message in str(caught.value)


def test_unreadable_files_are_errors(tmp_path: Path) -> None:
    with pytest.raises(ShellError, match=r"can.t be read .*nothing was changed"):
        load_inventory(tmp_path / "missing.yaml")
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00mise")
    with pytest.raises(ShellError, match="can't be read"):
        load_inventory(binary)


def test_empty_file_and_null_sections_mean_nothing_to_do() -> None:
    assert parse_inventory("", Path("i.yaml")).size == 0
    assert parse_inventory("mise:\nremoved:\n", Path("i.yaml")).size == 0
