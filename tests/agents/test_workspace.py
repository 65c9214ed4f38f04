"""Workspace confinement and the file tools, with hostile paths."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ruflo.agents.workspace import Workspace
from ruflo.errors import WorkspaceError


@pytest.fixture
def ws(workspace: Path) -> Workspace:
    (workspace / "src").mkdir()
    (workspace / "src" / "app.py").write_text("x = 1\ny = 2\nx = 3\n")
    return Workspace.open(workspace)


@pytest.mark.parametrize("path", ["../../etc/passwd", "..", "src/../../x", "src\\..\\..\\x"])
def test_dotdot_is_refused(ws: Workspace, path: str) -> None:
    with pytest.raises(WorkspaceError, match=r"contains '\.\.'"):
        ws.read_file(path)


@pytest.mark.parametrize("path", ["/etc/passwd", "~/.ssh/id_rsa", "C:\\Windows\\win.ini"])
def test_absolute_paths_are_refused(ws: Workspace, path: str) -> None:
    with pytest.raises(WorkspaceError, match="absolute path"):
        ws.read_file(path)


def test_symlinks_out_are_refused_for_every_tool(ws: Workspace, tmp_path: Path) -> None:
    (ws.root / "root").symlink_to("/")
    secret = tmp_path / "secret.txt"
    secret.write_text("keep out")
    (ws.root / "link.txt").symlink_to(secret)
    for call in (lambda: ws.read_file("root/etc/passwd"), lambda: ws.list_files("root"),
                 lambda: ws.write_file("link.txt", "pwned"),
                 lambda: ws.edit_file("link.txt", "keep", "come"),
                 lambda: ws.search_text("root", "root/etc")):
        with pytest.raises(WorkspaceError, match="outside the workspace"):
            call()
    assert secret.read_text() == "keep out"
    # Searching the whole workspace does not follow the link out either.
    assert "keep out" not in ws.search_text("keep out")


def test_a_symlink_inside_is_fine(ws: Workspace) -> None:
    (ws.root / "alias.py").symlink_to(ws.root / "src" / "app.py")
    assert ws.read_file("alias.py").startswith("x = 1")


def test_nul_bytes_are_refused(ws: Workspace) -> None:
    with pytest.raises(WorkspaceError, match="NUL"):
        ws.read_file("src/app.py\x00.txt")


def test_edit_needs_exactly_one_match(ws: Workspace) -> None:
    with pytest.raises(WorkspaceError, match="not found"):
        ws.edit_file("src/app.py", "z = 9", "z = 1")
    with pytest.raises(WorkspaceError, match="occurs 2 times"):
        ws.edit_file("src/app.py", "x = ", "x == ")
    assert ws.edit_file("src/app.py", "y = 2", "y = 20") == "edited src/app.py at line 2"
    assert ws.read_file("src/app.py") == "x = 1\ny = 20\nx = 3\n"


def test_write_list_read_search(ws: Workspace) -> None:
    ws.write_file("docs/notes/readme.md", "hello\nworld\n")
    (ws.root / ".git").mkdir()
    (ws.root / ".git" / "config").write_text("hello")
    listing = ws.list_files().splitlines()
    assert listing == ["docs/", "docs/notes/", "docs/notes/readme.md", "src/", "src/app.py"]
    assert ws.read_file("docs/notes/readme.md", start_line=2, end_line=2) == "world\n"
    assert ws.search_text("hello") == "docs/notes/readme.md:1: hello"
    assert ws.search_text(r"x = \d", regex=True).count("src/app.py") == 2
    with pytest.raises(WorkspaceError, match="does not exist"):
        ws.read_file("nope.txt")


def test_binary_files_are_not_read(ws: Workspace) -> None:
    (ws.root / "blob.bin").write_bytes(b"\x00\x01\x02")
    with pytest.raises(WorkspaceError, match="binary"):
        ws.read_file("blob.bin")


def test_workspace_must_exist(tmp_path: Path) -> None:
    with pytest.raises(WorkspaceError, match="not a folder"):
        Workspace.open(tmp_path / "missing")


def test_a_symlinked_root_is_resolved(tmp_path: Path, workspace: Path) -> None:
    link = tmp_path / "ws-link"
    os.symlink(workspace, link)
    ws = Workspace.open(link)
    ws.write_file("a.txt", "a")
    assert (workspace / "a.txt").read_text() == "a"
