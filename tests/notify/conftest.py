from __future__ import annotations

from collections.abc import Iterator

import pytest

from ruflo.notify.testing import ProviderStandIn


@pytest.fixture
def telegram() -> Iterator[ProviderStandIn]:
    with ProviderStandIn("telegram") as stand_in:
        yield stand_in


@pytest.fixture
def resend() -> Iterator[ProviderStandIn]:
    with ProviderStandIn("resend") as stand_in:
        yield stand_in


@pytest.fixture
def webhook() -> Iterator[ProviderStandIn]:
    with ProviderStandIn("webhook") as stand_in:
        yield stand_in
