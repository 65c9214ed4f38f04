"""The hive page in a real browser (Debian's Chromium) for its owner, an operator and another
user, with forward auth: everyone sees the owner; only the owner and operators get the controls
and the approval buttons (the API refuses the others anyway)."""

from __future__ import annotations

from typing import Any

import pytest
from ui_harness import Servers, axe_violations, expect, shoot

from ruflo.model import Approval, ApprovalKind, Hive, Mode, new_id

pytestmark = pytest.mark.browser


def serious_violations(page: Any) -> list[str]:
    return [f"{v['id']}: {v['help']}" for v in axe_violations(page)]


def test_the_hive_page_is_read_only_for_those_who_may_only_look(servers: Servers,
                                                                 browser: Any) -> None:
    # The server on 127.0.0.2: the browser connects from 127.0.0.1, the trusted proxy, and
    # never from the server's own address, whose user headers are refused.
    served = servers.start(gateway_url=None, auth="forward", bind="127.0.0.2",
                           env={"RUFLO_TRUSTED_PROXIES": "127.0.0.1", "RUFLO_OPERATORS": "ada"})
    hive = served.store.create_hive(Hive(id=new_id(), name="bob's bees", mode=Mode.SWARM,
                                         objective="make honey", owner="bob"))
    served.store.create_approval(Approval(id=new_id(), hive_id=hive.id,
                                          kind=ApprovalKind.STRATEGY, subject="Go on?"))
    for user, steers in (("cy", False), ("bob", True), ("ada", True)):
        context = browser.new_context(viewport={"width": 1280, "height": 860},
                                      extra_http_headers={"X-authentik-username": user})
        try:
            page = context.new_page()
            page.set_default_timeout(15_000)
            page.goto(f"{served.url}/hives/{hive.id}")
            expect()(page.locator("#hive-owner")).to_have_text("bob")
            expect()(page.locator("#approvals")).to_contain_text("Go on?")
            approve = page.get_by_role("button", name="Approve: Go on?")
            if steers:
                expect()(page.locator("#hive-controls")).to_be_visible()
                expect()(page.get_by_role("button", name="Pause")).to_be_enabled()
                expect()(approve).to_be_visible()
                assert page.locator("#hive-read-only").is_hidden()
            else:
                expect()(page.locator("#hive-read-only")).to_be_visible()
                expect()(page.locator("#hive-controls")).to_be_hidden()
                expect()(approve).to_have_count(0)
                expect()(page.locator("#approvals")).to_contain_text(
                    "Waiting for the hive's owner or an operator to decide.")
                shoot(page, "hive-read-only")
                assert not serious_violations(page)
        finally:
            context.close()
