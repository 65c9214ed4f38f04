"""Comparing an entry with what a manager lists: the traps that made upstream reinstall or
miscount on every boot."""

from __future__ import annotations

import json
from pathlib import Path

from ruflo.shell import Installed, Match, Mise, NpmGlobal, Pipx, Runner
from ruflo.shell.inventory import parse_spec
from ruflo.shell.managers import Cargo, removal_present


def test_npm_dist_tag_never_makes_an_installed_package_look_missing() -> None:
    installed = [Installed("claude-flow", "2.0.0-alpha.91"), Installed("@openai/codex", "0.20.0")]
    npm = NpmGlobal()
    assert npm.match(parse_spec("npm-global", "claude-flow@alpha"), installed)[0] is Match.PRESENT
    assert npm.match(parse_spec("npm-global", "@openai/codex"), installed)[0] is Match.PRESENT
    assert npm.match(parse_spec("npm-global", "@openai/codex@0.20"), installed)[0] is Match.PRESENT
    assert npm.match(parse_spec("npm-global", "@openai/codex@0.2"), installed)[0] is Match.OTHER_VERSION
    assert npm.match(parse_spec("npm-global", "codex"), installed)[0] is Match.MISSING


def test_pipx_compares_name_and_version_not_strings() -> None:
    pipx = Pipx()
    installed = [Installed("black", "24.1.0")]
    assert pipx.match(parse_spec("pipx", "black==24.1"), installed)[0] is Match.PRESENT
    assert pipx.match(parse_spec("pipx", "Black"), installed)[0] is Match.PRESENT
    assert pipx.match(parse_spec("pipx", "black>=25"), installed)[0] is Match.OTHER_VERSION
    assert pipx.install_commands(parse_spec("pipx", "black>=25"), Match.OTHER_VERSION) == [
        ["pipx", "install", "--force", "black>=25"]]
    assert removal_present(pipx, parse_spec("pipx", "black==23.0"), installed) is False
    assert removal_present(pipx, parse_spec("pipx", "black"), installed) is True


def test_mise_installed_but_not_active_is_not_present() -> None:
    mise = Mise()
    inactive = [Installed("node", "20.20.2", active=False)]
    node = parse_spec("mise", "node@20")
    assert mise.match(node, inactive)[0] is Match.INACTIVE
    assert mise.install_commands(node, Match.INACTIVE) == [["mise", "use", "--global", "node@20"]]
    assert mise.install_commands(node, Match.MISSING) == [
        ["mise", "install", "node@20"], ["mise", "use", "--global", "node@20"]]
    active = [Installed("node", "20.20.2", active=True, requested="20")]
    assert mise.match(node, active)[0] is Match.PRESENT
    assert mise.match(parse_spec("mise", "node@2"), active)[0] is Match.OTHER_VERSION
    rust = [Installed("rust", "1.80.0", active=True, requested="stable")]
    assert mise.match(parse_spec("mise", "rust@stable"), rust)[0] is Match.PRESENT
    assert mise.remove_commands(node) == [["mise", "unuse", "--global", "node@20"]]


def test_cargo_reads_crates2_json(tmp_path: Path) -> None:
    (tmp_path / ".crates2.json").write_text(json.dumps({"installs": {
        "ripgrep 14.1.0 (registry+https://github.com/rust-lang/crates.io-index)": {"bins": ["rg"]},
        "eza 0.18.2 (registry+https://github.com/rust-lang/crates.io-index)": {"bins": ["eza"]}}}))
    runner = Runner(env={"CARGO_HOME": str(tmp_path), "PATH": ""})
    installed = Cargo().list_installed(runner)
    assert sorted((i.name, i.version) for i in installed) == [("eza", "0.18.2"),
                                                              ("ripgrep", "14.1.0")]
    assert Cargo().match(parse_spec("cargo", "ripgrep@14"), installed)[0] is Match.PRESENT
