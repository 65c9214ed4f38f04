"""A task's changes on the hive page, in Debian's Chromium: its branch, commit, merge state, diff
stat and patch shown as text in <pre> blocks; a hostile file name and patch (`<script>`, an
`onerror` image, terminal escapes) stay inert text, never markup."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from ui_harness import Servers, expect, shoot

from hostile_git import hostile_git_hive
from ruflo.model import Hive, Mode

pytestmark = pytest.mark.browser


def test_a_tasks_changes_are_shown_as_inert_text(servers: Servers, page: Any,
                                                 tmp_path: Path) -> None:
    served = servers.start(gateway_url=None)
    hive, task = hostile_git_hive(served.store, tmp_path)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{served.url}/hives/{hive.id}")
    start = str(hive.config["start_commit"])[:12]
    expect()(page.locator("#hive-isolation")).to_have_text(
        f"git worktrees, branch ruflo/{hive.id} from {start}")
    card = page.locator(f"#tasks-done li[data-task-id='{task.id}']")
    expect()(card.locator(".task-title")).to_have_text(task.title)
    card.locator("button.task-open").click()
    expect()(page.locator("#changes-meta")).to_contain_text("not merged")
    expect()(page.locator("#changes-meta")).to_contain_text(f"branch ruflo-tasks/{hive.id}/")
    patch = page.locator("#changes-patch")
    expect()(patch).to_contain_text("<script>window.pwned = 1</script>?[2J?")
    expect()(patch).to_contain_text("<img src=x onerror=window.pwned=2>")
    expect()(page.locator("#changes-stat")).to_contain_text("1 file changed")
    shoot(page, "task-changes")
    # Text, not markup: no element came out of the patch, nothing ran.
    assert patch.evaluate("node => node.children.length") == 0
    assert page.locator("#changes-section script, #changes-section img").count() == 0
    assert page.evaluate("() => window.pwned === undefined")
    assert "\x1b" not in patch.inner_text()
    assert errors == []


def test_a_hive_sharing_its_folder_says_so(servers: Servers, page: Any, tmp_path: Path) -> None:
    served = servers.start(gateway_url=None)
    hive = Hive(id="shared", name="shared hive", mode=Mode.SWARM, objective="edit",
                workspace=str(tmp_path), config={"isolation": "none"})
    served.store.create_hive(hive, agents=[], tasks=[])
    page.goto(f"{served.url}/hives/{hive.id}")
    expect()(page.locator("#hive-isolation")).to_have_text(
        "none: the agents share the workspace folder")
