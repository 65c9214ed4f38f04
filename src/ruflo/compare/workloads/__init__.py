"""The built-in workloads of `ruflo compare`: a ticket, a bug, a feature and a registry (parallel
tasks that all edit the same lines: their merges conflict), each a workload YAML,
a fixture repository copied fresh into every live run, and a ScriptedGateway script that makes the
built-in agent do the work through tool calls (and, for company runs, answers the managers'
planning calls: docs/compare.md). Depends on the standard library and PyYAML.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from ruflo.errors import ConfigError

HERE = Path(__file__).parent

BUILTIN = ("ticket", "bug", "feature", "registry")
"""Built-in workload names, each a folder here with workload.yaml, repo/ and gateway.yaml."""


def builtin_path(name: str) -> Path:
    """The workload file of a built-in workload."""
    if name not in BUILTIN:
        raise ConfigError(f"no built-in workload {name!r}; built-in: {', '.join(BUILTIN)}")
    return HERE / name / "workload.yaml"


def gateway_rules(paths: Iterable[Path]) -> list[dict[str, Any]]:
    """The scripted rules that go with workload files: `gateway.yaml` beside each one that has
    it (a user's workload may ship its own script the same way)."""
    rules: list[dict[str, Any]] = []
    for path in paths:
        script = path.parent / "gateway.yaml"
        if not script.is_file():
            continue
        data = yaml.safe_load(script.read_text(encoding="utf-8")) or {}
        found = data.get("rules") if isinstance(data, dict) else None
        if not isinstance(found, list):
            raise ConfigError(f"{script}: expected a mapping with a `rules` list")
        rules += found
    return rules
