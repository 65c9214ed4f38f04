"""NUL characters reaching the store from the CLI (stdin, an import file, a workload file), on
SQLite and Postgres: one `error:` line naming the field, exit 2, nothing stored."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_harness import Cli

from ruflo.store import open_store

pytestmark = pytest.mark.integration

WORKLOAD = """\
name: nul
objective: write a file
tasks:
  - id: a
    title: "a\\0b"
"""


def one_error_line(stderr: str, *words: str) -> None:
    """The run ends on one `error:` line (after the boot trace, where a command prints one)."""
    assert "Traceback" not in stderr, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("error: "), stderr
    assert stderr.count("error: ") == 1, stderr
    for word in words:
        assert word in last, stderr


def test_nul_from_the_cli_is_one_clear_line_on_both_stores(cli: Cli, tmp_path: Path,
                                                           store_url: str) -> None:
    env = {"DATABASE_URL": store_url}
    stored = cli("memory", "store", "k", "-", env=env, input_text="note\x00text")
    assert stored.returncode == 2, stored.stderr
    one_error_line(stored.stderr, "content", "NUL", "nothing was stored")

    notes = tmp_path / "notes.jsonl"
    notes.write_text('{"namespace": "n", "key": "k1", "content": "fine"}\n'
                     '{"namespace": "n", "key": "k\\u0000", "content": "c"}\n')
    imported = cli("memory", "import", str(notes), env=env)
    assert imported.returncode == 2, imported.stderr
    one_error_line(imported.stderr, "key", "NUL")

    workload = tmp_path / "work.yaml"
    workload.write_text(WORKLOAD)
    ran = cli("orchestrate", "--workload", str(workload), "--agents", "1", env=env)
    assert ran.returncode == 2, ran.stderr
    one_error_line(ran.stderr, "title", "NUL")

    store = open_store(store_url)
    try:
        assert store.memory_list() == []  # the import is all or nothing
        assert store.list_hives() == []
    finally:
        store.close()
