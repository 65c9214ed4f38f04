"""The agent's workspace: path confinement and the file tools (list, read, write, edit, search).

Depends on ruflo.errors only. Every path an agent names is resolved inside the workspace root;
`..`, absolute paths and symlinks that lead out raise WorkspaceError, whose message the agent sees.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ruflo.errors import WorkspaceError

SKIPPED_DIRS = frozenset({".git", ".hg", ".svn", "__pycache__", "node_modules", ".venv", "venv",
                          ".mypy_cache", ".pytest_cache", ".ruff_cache", ".tox"})
"""Folders that listing and searching pass over: tool noise, never the work."""

MAX_FILE_BYTES = 2_000_000
"""Files larger than this are not read or searched whole (an agent gets an error instead)."""


@dataclass(frozen=True, slots=True)
class Workspace:
    """A folder the agent may read and change, and nothing outside it."""

    root: Path
    """Absolute, symlink-free path of the folder."""

    @classmethod
    def open(cls, folder: str | os.PathLike[str]) -> Workspace:
        root = Path(folder).resolve()
        if not root.is_dir():
            raise WorkspaceError(f"workspace {root} is not a folder: create it or point RUFLO_WORKSPACE "
                                 "at an existing one")
        return cls(root)

    # -- confinement ---------------------------------------------------------------------------
    def resolve(self, path: str) -> Path:
        """The real path of `path` (relative to the root), or WorkspaceError if it leads out."""
        if not isinstance(path, str):
            raise WorkspaceError("path must be a string relative to the workspace")
        if "\x00" in path:
            raise WorkspaceError("path contains a NUL byte")
        text = path.strip() or "."
        pure = PurePosixPath(text)
        if pure.is_absolute() or text.startswith("~") or re.match(r"^[A-Za-z]:[\\/]", text):
            raise WorkspaceError(f"{path!r} is an absolute path: use a path relative to the "
                                 "workspace root")
        if ".." in pure.parts or ".." in PurePosixPath(text.replace("\\", "/")).parts:
            raise WorkspaceError(f"{path!r} contains '..': paths must stay inside the workspace")
        resolved = (self.root / pure).resolve()
        if resolved != self.root and not resolved.is_relative_to(self.root):
            raise WorkspaceError(f"{path!r} is a symlink (or passes through one) that points "
                                 "outside the workspace: refused")
        return resolved

    def relative(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix() or "."

    # -- file tools ----------------------------------------------------------------------------
    def list_files(self, path: str = ".", *, limit: int = 500) -> str:
        """Files under `path`, recursively, one per line; folders end with '/'."""
        start = self.resolve(path)
        if not start.exists():
            raise WorkspaceError(f"{path!r} does not exist")
        if start.is_file():
            return self.relative(start)
        lines: list[str] = []
        for folder, dirs, files in os.walk(start):
            dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS)
            here = Path(folder)
            for name in dirs:
                lines.append(self.relative(here / name) + "/")
            for name in sorted(files):
                lines.append(self.relative(here / name))
            if len(lines) >= limit:
                return "\n".join(sorted(lines)[:limit]) + f"\n[listing stopped at {limit} entries]"
        return "\n".join(sorted(lines)) if lines else "(empty)"

    def read_file(self, path: str, *, start_line: int | None = None,
                  end_line: int | None = None) -> str:
        """The text of a file, or of lines start_line..end_line (1-based, inclusive)."""
        target = self._existing_file(path)
        text = self._read_text(target, path)
        if start_line is None and end_line is None:
            return text
        lines = text.splitlines(keepends=True)
        first = max(1, start_line or 1)
        last = min(len(lines), end_line or len(lines))
        return "".join(lines[first - 1:last])

    def write_file(self, path: str, content: str) -> str:
        """Create or replace a file (parent folders are created)."""
        if not isinstance(content, str):
            raise WorkspaceError("content must be a string")
        target = self.resolve(path)
        if target == self.root or target.is_dir():
            raise WorkspaceError(f"{path!r} is a folder, not a file")
        target.parent.mkdir(parents=True, exist_ok=True)
        # Re-check after mkdir: a parent created through a racing symlink must not lead out.
        self.resolve(path)
        self._write_text(target, content)
        return f"wrote {len(content.encode())} bytes to {self.relative(target)}"

    def edit_file(self, path: str, old: str, new: str) -> str:
        """Replace the one exact occurrence of `old` with `new`."""
        if not isinstance(old, str) or not isinstance(new, str):
            raise WorkspaceError("old and new must be strings")
        if not old:
            raise WorkspaceError("old is empty: give the exact text to replace")
        target = self._existing_file(path)
        text = self._read_text(target, path)
        count = text.count(old)
        if count == 0:
            raise WorkspaceError(f"the text to replace was not found in {path!r} (it must match "
                                 "exactly, whitespace included): read the file and try again")
        if count > 1:
            raise WorkspaceError(f"the text to replace occurs {count} times in {path!r}: include "
                                 "more surrounding lines so it matches exactly once")
        self._write_text(target, text.replace(old, new, 1))
        line = text[:text.index(old)].count("\n") + 1
        return f"edited {self.relative(target)} at line {line}"

    def search_text(self, pattern: str, path: str = ".", *, regex: bool = False,
                    limit: int = 200) -> str:
        """Lines matching `pattern` as 'file:line: text', skipping binary and huge files."""
        if not isinstance(pattern, str) or not pattern:
            raise WorkspaceError("pattern is empty")
        try:
            matcher = re.compile(pattern if regex else re.escape(pattern))
        except re.error as error:
            raise WorkspaceError(f"invalid regular expression: {error}") from None
        start = self.resolve(path)
        files = [start] if start.is_file() else self._walk_files(start)
        hits: list[str] = []
        for file in files:
            try:
                if file.stat().st_size > MAX_FILE_BYTES:
                    continue
                data = file.read_bytes()
            except OSError:
                continue
            if b"\x00" in data[:8192]:
                continue
            for number, line in enumerate(data.decode(errors="replace").splitlines(), 1):
                if matcher.search(line):
                    hits.append(f"{self.relative(file)}:{number}: {line[:300]}")
                    if len(hits) >= limit:
                        return "\n".join(hits) + f"\n[search stopped at {limit} matches]"
        return "\n".join(hits) if hits else "no matches"

    # -- internals -----------------------------------------------------------------------------
    def _walk_files(self, start: Path) -> list[Path]:
        found: list[Path] = []
        for folder, dirs, files in os.walk(start):
            dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS)
            for name in sorted(files):
                file = Path(folder) / name
                # A symlinked file inside may point out; search only what resolves inside.
                if file.is_symlink() and not file.resolve().is_relative_to(self.root):
                    continue
                found.append(file)
        return found

    def _existing_file(self, path: str) -> Path:
        target = self.resolve(path)
        if not target.exists():
            raise WorkspaceError(f"{path!r} does not exist (list_files shows what is there)")
        if not target.is_file():
            raise WorkspaceError(f"{path!r} is not a file")
        return target

    def _read_text(self, target: Path, shown: str) -> str:
        if target.stat().st_size > MAX_FILE_BYTES:
            raise WorkspaceError(f"{shown!r} is larger than {MAX_FILE_BYTES} bytes: read a line "
                                 "range or search it instead")
        fd = os.open(target, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as handle:
            data = handle.read()
        if b"\x00" in data[:8192]:
            raise WorkspaceError(f"{shown!r} is a binary file")
        return data.decode(errors="replace")

    def _write_text(self, target: Path, content: str) -> None:
        # O_NOFOLLOW: a symlink planted at the final name after resolve() is refused, not followed.
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
        except OSError as error:
            raise WorkspaceError(f"cannot write {self.relative(target)}: {error.strerror}") from None
        with os.fdopen(fd, "wb") as handle:
            handle.write(content.encode())
