"""`ruflo task show --patch` on a git hive: the task's patch printed, terminal escapes from the
agent's file shown as '?'; without --patch only the stat; --json carries the same `git` as the API."""

from __future__ import annotations

import json
from pathlib import Path

from cli_harness import Cli

from hostile_git import hostile_git_hive


def test_task_show_prints_the_patch_inert(cli: Cli, tmp_path: Path) -> None:
    store = cli.store()
    try:
        hive, task = hostile_git_hive(store, tmp_path)
    finally:
        store.close()
    shown = cli("task", "show", task.id, "--hive", hive.id, "--patch")
    assert shown.returncode == 0, shown.stderr
    assert "+<script>window.pwned = 1</script>?[2J?" in shown.stdout
    assert "\x1b" not in shown.stdout
    assert "1 file changed" in shown.stdout
    plain = cli("task", "show", task.id, "--hive", hive.id)
    assert "1 file changed" in plain.stdout
    assert "window.pwned = 1" not in plain.stdout
    as_json = json.loads(cli("task", "show", task.id, "--hive", hive.id, "--json").stdout)
    assert "<script>window.pwned = 1</script>\x1b[2J" in as_json["git"]["patch"]
    assert as_json["git"]["merged"] is False
