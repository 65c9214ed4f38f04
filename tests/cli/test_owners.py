"""Owners and operators from the shell: `ruflo hive list|show` name each hive's owner, and
`ruflo token create --scope operator` mints an operator's token (subprocesses, temp data dir)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_harness import Cli

from ruflo.model import Hive, Mode

pytestmark = pytest.mark.integration


def test_hive_list_and_show_name_the_owner(cli: Cli, tmp_path: Path) -> None:
    store = cli.store()
    try:
        store.create_hive(Hive(id="a0a0a0a0a0a0", name="served", mode=Mode.SWARM,
                               objective="o", owner="bob"))
        store.create_hive(Hive(id="b1b1b1b1b1b1", name="made here", mode=Mode.SWARM,
                               objective="o"))
    finally:
        store.close()
    listed = cli("hive", "list")
    assert listed.returncode == 0, listed.stderr
    lines = {line.split()[0]: line for line in listed.stdout.splitlines()}
    assert " bob " in lines["a0a0a0a0a0a0"]
    assert " local " in lines["b1b1b1b1b1b1"]
    as_json = json.loads(cli("hive", "list", "--json").stdout)
    assert {h["id"]: h["owner"] for h in as_json} == {"a0a0a0a0a0a0": "bob",
                                                      "b1b1b1b1b1b1": "local"}
    shown = cli("hive", "show", "a0a0a0a0")
    assert "\n  owner: bob\n" in shown.stdout
    assert json.loads(cli("hive", "show", "b1b1", "--json").stdout)["hive"]["owner"] == "local"


def test_token_scopes(cli: Cli) -> None:
    made = cli("token", "create", "--user", "ada", "--scope", "operator")
    assert made.returncode == 0, made.stderr
    assert "for user 'ada' with scope operator created" in made.stderr
    assert cli("token", "create", "--user", "bob").returncode == 0
    listed = json.loads(cli("token", "list", "--json").stdout)
    assert [(t["user_id"], t["scopes"]) for t in listed] == [("ada", ["operator"]), ("bob", [])]
    assert "scopes=operator" in cli("token", "list").stdout

    from ruflo.server.auth import hash_token

    store = cli.store()
    try:
        assert store.find_token(hash_token(made.stdout.strip()))["scopes"] == ["operator"]
    finally:
        store.close()
    for args, said in ((["--user", "eve", "--scope", "admin"], "--scope 'admin' is not a scope"),
                       (["--user", "eve", "--scope", "operator", "--scope", "root"],
                        "--scope 'root' is not a scope"),
                       (["--user", "local"], "--user 'local' is kept for this machine's own"),
                       (["--user", " local ", "--scope", "operator"], "--user 'local' is kept")):
        refused = cli("token", "create", *args)
        assert refused.returncode == 2, refused.stderr
        assert said in refused.stderr
        assert "no token was created" in refused.stderr
    assert len(json.loads(cli("token", "list", "--json").stdout)) == 2
