"""No import circles between ruflo's modules: every import, including those made inside functions
and under TYPE_CHECKING, read from the source by grimp (import-linter's graph library)."""

from __future__ import annotations

import grimp
import pytest

EXEMPT: set[tuple[str, str]] = set()
"""Imports left out of the check, (importer, imported); each must still exist."""


def circles(graph: grimp.ImportGraph) -> list[tuple[str, ...]]:
    """Each import that closes a circle, as the circle it closes (importer first), sorted."""
    found = set()
    for importer in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            back = graph.find_shortest_chain(importer=imported, imported=importer)
            if back is not None:
                found.add((importer, *back))
    return sorted(found)


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("ruflo", cache_dir=None)


def test_ruflo_has_no_import_circles(graph: grimp.ImportGraph) -> None:
    for importer, imported in sorted(EXEMPT):
        assert graph.direct_import_exists(importer=importer, imported=imported), (
            f"{importer} no longer imports {imported}: drop the exemption")
        graph.remove_import(importer=importer, imported=imported)
    assert circles(graph) == []


def test_a_circle_is_found() -> None:
    graph = grimp.ImportGraph()
    for module in ("p", "p.a", "p.b", "p.c", "p.d"):
        graph.add_module(module)
    graph.add_import(importer="p.a", imported="p.b")
    graph.add_import(importer="p.b", imported="p.c")
    graph.add_import(importer="p.c", imported="p.a")
    graph.add_import(importer="p.c", imported="p.d")
    assert circles(graph) == [("p.a", "p.b", "p.c", "p.a"), ("p.b", "p.c", "p.a", "p.b"),
                              ("p.c", "p.a", "p.b", "p.c")]
