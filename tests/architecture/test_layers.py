"""The layer order of docs/design.md is checked by import-linter (`lint-imports`, configured in
pyproject.toml): the real tree keeps it, and a copy of the package with an upward import or an
import circle added breaks it, so the contract is known to bite."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(src: Path) -> subprocess.CompletedProcess[str]:
    """lint-imports over the `ruflo` package found in `src`, with the repository's contracts
    (its report without terminal colours, which import-linter 2.6 writes even to a pipe)."""
    env = {**os.environ, "PYTHONPATH": str(src), "NO_COLOR": "1"}
    done = subprocess.run(
        [str(LINT_IMPORTS), "--config", str(REPO / "pyproject.toml"), "--no-cache"],
        cwd=src, env=env, capture_output=True, text=True, timeout=120, check=False)
    plain = re.compile(r"\x1b\[[0-9;]*m")
    return subprocess.CompletedProcess(done.args, done.returncode,
                                       plain.sub("", done.stdout), plain.sub("", done.stderr))


def copy_of_the_package(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "src" / "ruflo", tmp_path / "ruflo",
                    ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def add_line(module: Path, line: str) -> None:
    module.write_text(module.read_text(encoding="utf-8") + f"\n{line}\n", encoding="utf-8")


def test_the_real_tree_keeps_the_layers_and_has_no_circles() -> None:
    result = lint_imports(REPO / "src")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ruflo's layers (docs/design.md) KEPT" in result.stdout
    assert "no import circles between the modules or packages of one package KEPT" in result.stdout


@pytest.mark.parametrize(("module", "line", "broken", "named"), [
    # the core model reaching up into the engine
    ("model.py", "import ruflo.engine.clock", "ruflo's layers (docs/design.md) BROKEN",
     "ruflo.model -> ruflo.engine.clock"),
    # the store reaching up into the gateway, its sibling layer's upper half
    ("store/base.py", "from ruflo.gateway import base as _gateway", "layers (docs/design.md) BROKEN",
     "ruflo.store.base -> ruflo.gateway.base"),
    # a circle inside one package: board.py is imported by base.py
    ("policies/board.py", "import ruflo.policies.base",
     "no import circles between the modules or packages of one package BROKEN", ".board -> .base"),
])
def test_an_added_upward_import_or_circle_breaks_the_contract(
        tmp_path: Path, module: str, line: str, broken: str, named: str) -> None:
    src = copy_of_the_package(tmp_path)
    assert lint_imports(src).returncode == 0  # the copy keeps the contracts before the change
    add_line(src / "ruflo" / module, line)
    result = lint_imports(src)
    assert result.returncode == 1, result.stdout + result.stderr
    assert broken in result.stdout
    assert named in result.stdout
