from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from standin_tools import install_standins

from ruflo.notify.testing import ProviderStandIn


@pytest.fixture
def telegram_api() -> Iterator[ProviderStandIn]:
    with ProviderStandIn("telegram") as stand_in:
        yield stand_in


@pytest.fixture
def standins(tmp_path: Path) -> dict[str, str]:
    return install_standins(tmp_path / "tools")
