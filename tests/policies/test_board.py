"""The board's invariants: one holder per claim, dependencies gate readiness, failures cascade."""

from __future__ import annotations

import pytest

from ruflo.errors import Conflict, PolicyError
from ruflo.model import TaskState
from ruflo.policies import Board, TaskSpec


def make_board() -> Board:
    board = Board(max_attempts=2)
    board.post_many(
        [TaskSpec("a"), TaskSpec("b", depends_on=("a",)), TaskSpec("c", depends_on=("b",))], 0.0
    )
    return board


def test_only_tasks_without_pending_dependencies_are_ready() -> None:
    board = make_board()
    assert [t.id for t in board.drain_ready()] == ["a"]
    with pytest.raises(Conflict, match="waits on 1 dependencies"):
        board.claim("b", "x", 0.0)


def test_a_claim_has_one_holder_and_only_the_holder_finishes() -> None:
    board = make_board()
    board.claim("a", "x", 0.0)
    with pytest.raises(Conflict, match="held by 'x'"):
        board.claim("a", "y", 0.0)
    with pytest.raises(Conflict, match="does not hold"):
        board.finish("a", "y", True, 1.0)
    board.finish("a", "x", True, 1.0)
    with pytest.raises(Conflict):
        board.finish("a", "x", True, 2.0)  # never completed twice
    board.drain_ready()
    assert board.get("b").ready


def test_lost_attempts_past_the_cap_fail_the_task_and_cancel_dependents() -> None:
    board = make_board()
    board.claim("a", "x", 0.0)
    board.finish("a", "x", False, 1.0)
    assert board.get("a").state is TaskState.OPEN
    board.claim("a", "y", 1.0)
    board.release("a", "y", 2.0)
    assert board.get("a").state is TaskState.FAILED
    assert board.get("b").state is TaskState.CANCELLED
    assert board.get("c").state is TaskState.CANCELLED
    assert board.finished


def test_a_death_does_not_use_up_an_attempt() -> None:
    board = make_board()
    for agent in ("x", "y", "z"):
        board.claim("a", agent, 0.0)
        board.release("a", agent, 1.0, counts=False)
    assert board.get("a").state is TaskState.OPEN


def test_unknown_dependency_and_duplicate_id_are_refused() -> None:
    board = make_board()
    with pytest.raises(PolicyError, match="unknown task 'nope'"):
        board.post("d", (), 1, 1.0, ("nope",), 0.0)
    assert "d" not in board.tasks
    with pytest.raises(PolicyError, match="already on the board"):
        board.post("a", (), 1, 1.0, (), 0.0)


def test_decomposition_makes_the_parent_wait_for_its_parts() -> None:
    board = make_board()
    board.claim("a", "x", 0.0)
    board.drain_ready()
    parts = board.decompose("a", "x", [TaskSpec("a.1"), TaskSpec("a.2")], 1.0, 0.5)
    assert [p.parent for p in parts] == ["a", "a"]
    assert sorted(t.id for t in board.drain_ready()) == ["a.1", "a.2"]
    for part in ("a.1", "a.2"):
        board.claim(part, "y", 1.0)
        board.finish(part, "y", True, 2.0)
    assert [t.id for t in board.drain_ready()] == ["a"]
    assert board.get("a").effort == 0.5
