"""Hive owners and token scopes in the store: kept on both stores, and a store written before
owners were kept (schema 0002) is upgraded with its ownerless hives given to "local"."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from store_helpers import store_at_revision

from ruflo.model import LOCAL_USER, Hive, Mode, new_id
from ruflo.store import open_store


def test_owners_and_scopes_are_kept(store: Any) -> None:
    mine = store.create_hive(Hive(id=new_id(), name="m", mode=Mode.SWARM, objective="o",
                                  owner="bob"))
    cli = store.create_hive(Hive(id=new_id(), name="c", mode=Mode.SWARM, objective="o"))
    assert store.get_hive(mine.id).owner == "bob"
    assert store.get_hive(cli.id).owner == LOCAL_USER, "a hive made outside the server"
    assert [h.id for h in store.list_hives(owner="bob")] == [mine.id]
    made = store.create_token(token_id="t1", name="ops", user_id="ada", token_hash="a" * 64,
                              scopes=["operator", "operator"])
    assert made["scopes"] == ["operator"]
    store.create_token(token_id="t2", name="plain", user_id="bob", token_hash="b" * 64)
    assert store.find_token("a" * 64)["scopes"] == ["operator"]
    assert store.find_token("b" * 64)["scopes"] == []
    assert [t["scopes"] for t in store.list_tokens()] == [["operator"], []]


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_store_at_0002_gets_owners_and_scopes(kind: str, tmp_path: Path,
                                                request: pytest.FixtureRequest) -> None:
    values = "%(id)s, %(owner)s" if kind == "postgres" else ":id, :owner"
    with store_at_revision(kind, "0002", tmp_path, request) as (url, connection):
        for hive_id, owner in (("cli-made", None), ("served", "bob"), ("no-auth", "local")):
            connection.exec_driver_sql(
                "INSERT INTO hives (id, owner, name, mode, objective, status, config, created_at, "
                f"updated_at) VALUES ({values}, 'h', 'swarm', 'o', 'running', '{{}}', 1.0, 1.0)",
                {"id": hive_id, "owner": owner})
        connection.exec_driver_sql(
            "INSERT INTO tokens (id, name, user_id, token_hash, created_at) VALUES "
            "('t1', 'old', 'carol', 'c', 1.0)")
        connection.commit()

    store = open_store(url)
    try:
        assert {h.id: h.owner for h in store.list_hives()} == {
            "cli-made": LOCAL_USER, "served": "bob", "no-auth": LOCAL_USER}
        assert store.find_token("c") is not None
        assert store.find_token("c")["scopes"] == [], "old tokens carry no scope"
    finally:
        store.close()
