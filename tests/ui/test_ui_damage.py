"""A stored hive row that can't be read whole, in a real browser (Debian's Chromium): the hives
list marks it and its page says what is shown in its stead, while the other hives are as ever."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from ui_harness import Servers, expect, shoot

from ruflo.model import Hive, Mode, new_id

pytestmark = pytest.mark.browser


def test_a_damaged_hive_is_marked_in_the_list_and_explained_on_its_page(
        servers: Servers, page: Any, tmp_path: Path) -> None:
    served = servers.start(gateway_url=None)
    healthy = served.store.create_hive(Hive(id=new_id(), name="healthy", mode=Mode.SWARM,
                                            objective="fine"))
    broken = served.store.create_hive(Hive(id=new_id(), name="broken", mode=Mode.SWARM,
                                           objective="its config was mangled"))
    [database] = tmp_path.glob("**/ruflo.db")
    with sqlite3.connect(database) as raw:  # what no ruflo write can produce: a bad JSON column
        raw.execute("UPDATE hives SET config = ?, status = ? WHERE id = ?",
                    ("{not json", "exploded", broken.id))

    page.goto(f"{served.url}/hives")
    rows = page.locator("#hives-body tr")
    expect()(rows).to_have_count(2)
    expect()(rows.filter(has_text="broken").locator(".damage")).to_have_text("damaged")
    expect()(rows.filter(has_text="healthy").locator(".damage")).to_have_count(0)

    page.goto(f"{served.url}/hives/{broken.id}")
    note = page.locator("#hive-damage")
    expect()(note).to_be_visible()
    expect()(note).to_contain_text("can't be read whole")
    expect()(note).to_contain_text("shown as paused")
    expect()(page.locator("#hive-status")).to_have_text("paused")
    shoot(page, "hive-damaged")

    page.goto(f"{served.url}/hives/{healthy.id}")
    expect()(page.locator("#hive-name")).to_have_text("healthy")
    expect()(page.locator("#hive-damage")).to_be_hidden()
