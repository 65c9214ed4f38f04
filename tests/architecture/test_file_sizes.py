"""No source file under src/ruflo is longer than 700 lines: past that a module holds more than one
concern (docs/design.md, "Layers")."""

from __future__ import annotations

from fnmatch import fnmatch
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "ruflo"
LIMIT = 700
TOO_LONG_FOR_NOW: set[str] = set()
"""Files allowed past the limit, relative to src/ruflo; each must still be past it."""


def lines(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


def sources() -> dict[str, int]:
    """Line counts of ruflo's own Python files (the built-in workloads' fixture repositories are
    material for agents, not ruflo's code)."""
    named = {path.relative_to(PACKAGE).as_posix(): path for path in PACKAGE.rglob("*.py")}
    return {name: lines(path) for name, path in sorted(named.items())
            if not fnmatch(name, "compare/workloads/*/repo/*")}


def test_no_source_file_is_longer_than_the_limit() -> None:
    found = sources()
    assert len(found) > 100  # the walk found the package
    too_long = {name: count for name, count in found.items()
                if count > LIMIT and name not in TOO_LONG_FOR_NOW}
    assert too_long == {}
    shrunk = {name for name in TOO_LONG_FOR_NOW if found.get(name, 0) <= LIMIT}
    assert shrunk == set(), "within the limit now (or gone): drop from TOO_LONG_FOR_NOW"
