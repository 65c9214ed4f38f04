"""Fixtures of the deploy tests."""

from __future__ import annotations

from typing import Any

import pytest
from deploy_files import K8S
from rendering import render


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    """What kustomize renders for the postgres-workers overlay (the ruflo pod, the workers and
    their database, with the network policies), once per test module."""
    return render(K8S / "overlays" / "postgres-workers")
