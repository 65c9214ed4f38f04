"""Confining the commands ruflo runs for agents (the run_command tool, verify commands, outside
agent CLIs) with bubblewrap. Depends on the standard library and ruflo.errors (and, lazily, on
ruflo.config for the process's settings).

Inside the sandbox only the attempt's folder is writable. The system's programs and libraries
(/usr, /bin, /lib*), a few harmless files of /etc, the Python ruflo runs on, the folders on the
command's PATH and RUFLO_SANDBOX_READ are shown read-only; /tmp and the home folder are empty
and private; everything else (ruflo's data and store, other workspaces, $HOME's contents,
/etc/shadow, /run, /var) does not exist there. There is no network: only loopback, which for an
outside agent carries the model relay (ruflo.agents.relay) to the gateway.

When the attempt's folder is a git worktree (git isolation), what git needs to read it is shown
read-only too: the worktree's admin folder and the repository's common git folder, so `git
status`, `git diff` and `git log` work inside while commits, `add` and ref updates fail (ruflo
commits outside, agents/gitwork.py). Of that folder the config files (a remote URL may carry a
token), anything named like credentials, other worktrees' admin folders and ruflo's own worktrees
(other attempts, the integration worktree) stay hidden.
"""

from __future__ import annotations

import functools
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

from ruflo.errors import ConfigError

if TYPE_CHECKING:
    from ruflo.agents.relay import Relay
    from ruflo.config import Settings

__all__ = ["Sandbox", "SandboxMode", "current_sandbox", "sandbox_for", "sandbox_trace",
           "use_sandbox"]


class SandboxMode(StrEnum):
    AUTO = "auto"
    """bubblewrap where it works; elsewhere commands are refused."""
    BWRAP = "bwrap"
    """bubblewrap, or commands are refused."""
    OFF = "off"
    """No confinement (the operator's explicit choice), said loudly in the trace."""


HOW_TO_FIX = ("install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap) or set "
              "RUFLO_SANDBOX=off to run them unconfined")

ENV = shutil.which("env", path="/usr/bin:/bin") or "/usr/bin/env"
"""coreutils' env (8.31 or later): it sets SIGTERM's disposition around bubblewrap."""

SYSTEM_FOLDERS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
"""Shown read-only (or as the same symlink, on merged-/usr systems)."""

ETC_FILES = (
    "alternatives", "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "passwd", "group",
    "nsswitch.conf", "hosts", "host.conf", "localtime", "timezone", "locale.alias",
    "mime.types", "protocols", "services", "ssl/certs", "ssl/openssl.cnf", "ca-certificates",
    "ca-certificates.conf", "gitconfig", "inputrc", "os-release", "debian_version", "magic",
    "terminfo", "python3", "python3.11", "python3.12", "python3.13", "shells",
)
"""The parts of /etc programs commonly read that hold no secret (not shadow, not ssl/private,
not ssh keys): everything else of /etc is hidden."""


@dataclass(frozen=True, slots=True)
class Sandbox:
    """How commands are confined. Build it with `sandbox_for(settings)`; `current_sandbox()` is
    the one this process uses when a caller names none."""

    mode: SandboxMode
    """The setting asked for."""
    source: str = "default"
    """Where the setting came from (for the trace); unconfined: who opted out."""
    bwrap: str | None = None
    """The bubblewrap program that confines commands; None: they run unconfined or not at all."""
    refusal: str | None = None
    """Why commands are refused (no working sandbox and no opt-out); None when they may run."""
    readable: tuple[Path, ...] = ()
    """Folders shown read-only besides the system's, ruflo's Python and the command's PATH:
    RUFLO_SANDBOX_READ, and an attempt's own (an outside agent's prompt folder)."""
    hidden: tuple[Path, ...] = ()
    """Folders never shown even inside a shown one (ruflo's data dir, its config folder)."""
    writable: tuple[Path, ...] = ()
    """Folders writable besides the attempt's own: an agent CLI's private home."""
    relay: Relay | None = field(default=None, compare=False)
    """An outside agent's road to the gateway; None: no network at all."""
    shown_path: str | None = None
    """The PATH whose folders are shown; None: the command's own. An outside agent's
    environment is its definer's word, so its PATH must not choose what the sandbox shows."""

    @property
    def confines(self) -> bool:
        return self.bwrap is not None

    def describe(self) -> str:
        """One line for the boot trace and `ruflo doctor`."""
        if self.refusal is not None:
            return f"commands: REFUSED: {self.refusal}"
        if self.bwrap is None:
            return (f"commands: NOT SANDBOXED ({self.source}): agents' commands and verify run "
                    "as this user, with its files and network")
        return (f"commands: sandboxed with bubblewrap ({self.bwrap}; RUFLO_SANDBOX="
                f"{self.mode.value}, {self.source}): the attempt's folder writable, system "
                "folders read-only, the rest hidden, no network but the model relay")

    def with_extras(self, *, readable: Iterable[Path] = (), relay: Relay | None = None,
                    shown_path: str | None = None, writable: Iterable[Path] = ()) -> Sandbox:
        """This sandbox showing `readable` too (and the folders of `shown_path` rather than the
        command's PATH) and `writable` writable, with `relay` as its road to the gateway."""
        return replace(self, readable=(*self.readable, *readable), relay=relay,
                       shown_path=shown_path, writable=(*self.writable, *writable))

    def require(self) -> None:
        """Raise the refusal (one line: what happened, that nothing ran, what to do)."""
        if self.refusal is not None:
            raise ConfigError(f"commands are refused: {self.refusal}; nothing was run")

    def confine(self, argv: Sequence[str], *, cwd: Path, path: str | None = None) -> list[str]:
        """The argv that runs `argv` in the sandbox with `cwd` writable (`path`: the command's
        PATH, whose folders are shown read-only). Unconfined: `argv` itself."""
        self.require()
        if self.bwrap is None:
            return list(argv)
        cwd = Path(os.path.realpath(cwd))
        mounts: list[tuple[Path, int, list[str]]] = []
        home = home_folder()
        if home is not None:
            mounts.append((home, 0, ["--tmpfs", str(home)]))
        path = self.shown_path if self.shown_path is not None else path
        for shown in sorted({*self.readable, *interpreter_folders(), *path_folders(path)}):
            if shown.exists() and not under_system(shown):
                mounts.append((shown, 1, ["--ro-bind", str(shown), str(shown)]))
        mounts += git_mounts(cwd)
        bound = [m[0] for m in mounts if m[1] == 1] + [cwd]
        for secret in self.hidden:
            if secret.is_dir() and any(inside(secret, b) for b in bound):
                mounts.append((secret, 2, ["--tmpfs", str(secret)]))
        mounts.append((cwd, 3, ["--bind", str(cwd), str(cwd)]))
        for own in self.writable:
            own = Path(os.path.realpath(own))
            mounts.append((own, 3, ["--bind", str(own), str(own)]))
        args = [self.bwrap, *base_layout(hosts=self.relay is None)]
        for _, _, mount in sorted(mounts, key=lambda m: (len(m[0].parts), m[1])):
            args += mount
        command = list(argv)
        if self.relay is not None:
            for route in self.relay.routes:
                args += ["--ro-bind", str(route.socket), str(route.socket)]
            args += ["--ro-bind", str(self.relay.script), str(self.relay.script),
                     "--ro-bind", str(self.relay.hosts), "/etc/hosts"]
            command = self.relay.launcher(os.path.realpath(sys.executable)) + command
        # SIGTERM to the group reaches the command, which gets its grace period; bwrap itself
        # ignores it (or it would tear the sandbox down at once) and ends when the command does.
        return [ENV, "--ignore-signal=TERM", *args, "--chdir", str(cwd), "--",
                ENV, "--default-signal=TERM", *command]


def git_mounts(cwd: Path) -> list[tuple[Path, int, list[str]]]:
    """What git needs to read the worktree `cwd` is, read-only, its secrets and the other
    worktrees hidden; nothing when `cwd` is no worktree (or its `.git` file does not lead to a
    worktree that names `cwd` back: the command may have rewritten it, and must not choose what
    is shown)."""
    found = worktree_folders(cwd)
    if found is None:
        return []
    admin, common = found
    mounts = [(common, 1, ["--ro-bind", str(common), str(common)]),
              (admin, 1, ["--ro-bind", str(admin), str(admin)])]
    for folder in (common / "worktrees", common / "ruflo", common / "remotes",
                   common / "branches"):
        if folder.is_dir() and not folder.is_symlink():
            mounts.append((folder, 2, ["--tmpfs", str(folder)]))
    secrets = [common / "config", common / "config.worktree", admin / "config.worktree"]
    secrets += [entry for entry in common.iterdir() if "credential" in entry.name.lower()]
    for secret in secrets:
        # A symlink's target is what git reads: hidden where it is shown (inside the git
        # folders); elsewhere it is not shown at all.
        secret = Path(os.path.realpath(secret))
        if not inside(secret, common) or secret == common:
            continue
        if secret.is_dir():
            mounts.append((secret, 2, ["--tmpfs", str(secret)]))
        elif secret.exists():
            # A bind mount of a device node is unreadable unless it is a device bind; /dev/null
            # reads empty (git takes that as no configuration) and swallows writes.
            mounts.append((secret, 2, ["--dev-bind", "/dev/null", str(secret)]))
    return mounts


def worktree_folders(cwd: Path) -> tuple[Path, Path] | None:
    """The admin folder (`<common>/worktrees/<id>`) and common git folder of the worktree `cwd`,
    when its `.git` file leads there and the admin folder's `gitdir` names `cwd` back."""
    dotgit = cwd / ".git"
    if dotgit.is_symlink() or not dotgit.is_file():
        return None
    said = head_line(dotgit)
    if not said.startswith("gitdir: "):
        return None
    admin = Path(os.path.realpath(cwd / said.removeprefix("gitdir: ")))
    common = Path(os.path.realpath(admin / (head_line(admin / "commondir") or ".")))
    back = head_line(admin / "gitdir")
    if (admin.parent != common / "worktrees" or not back
            or Path(os.path.realpath(admin / back)) != dotgit):
        return None
    return admin, common


def head_line(file: Path) -> str:
    """The first line of a small file ("" when it is missing or no regular file)."""
    if file.is_symlink() or not file.is_file():
        return ""
    with file.open(errors="replace") as handle:
        return handle.read(4096).partition("\n")[0].strip()


def base_layout(*, hosts: bool = True) -> list[str]:
    """The mounts every sandbox shares: namespaces, system folders, /etc's harmless files,
    fresh /proc and /dev, a private /tmp."""
    args = ["--unshare-all", "--die-with-parent"]
    for name in SYSTEM_FOLDERS:
        folder = Path(name)
        if folder.is_symlink():
            args += ["--symlink", os.readlink(folder), name]
        elif folder.is_dir():
            args += ["--ro-bind", name, name]
    for name in ETC_FILES:
        if name == "hosts" and not hosts:
            continue
        args += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    return [*args, "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]


def under_system(folder: Path) -> bool:
    return any(inside(folder, Path(name)) for name in SYSTEM_FOLDERS)


def inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def home_folder() -> Path | None:
    try:
        home = Path(pwd.getpwuid(os.getuid()).pw_dir)
    except KeyError:
        return None
    return home if home != Path("/") and home.is_dir() else None


@functools.cache
def interpreter_folders() -> tuple[Path, ...]:
    """The Python ruflo runs on (its venv and the installation under it): commands that run
    `python` from ruflo's PATH, and the relay's inside half, need it."""
    folders = {Path(os.path.realpath(sys.prefix)), Path(os.path.realpath(sys.base_prefix))}
    return tuple(sorted(folders))


def path_folders(path: str | None) -> list[Path]:
    """The folders of a PATH, each with the virtualenv it belongs to (and that venv's Python)."""
    found: list[Path] = []
    for entry in (path or "").split(os.pathsep):
        if not entry or not os.path.isabs(entry) or not os.path.isdir(entry):
            continue
        folder = Path(os.path.realpath(entry))
        found.append(folder)
        config = folder.parent / "pyvenv.cfg"
        if config.is_file():
            found.append(folder.parent)
            for line in config.read_text(errors="replace").splitlines():
                key, _, value = line.partition("=")
                if key.strip() == "home" and value.strip():
                    found.append(Path(os.path.realpath(value.strip())).parent)
    return found


@functools.cache
def probe(bwrap: str) -> str | None:
    """Whether bubblewrap can build the sandbox here: None if it can, else why not (once per
    process: user namespaces and /proc mounts don't come and go)."""
    with tempfile.TemporaryDirectory(prefix="ruflo-probe-") as folder:
        argv = Sandbox(SandboxMode.BWRAP, bwrap=bwrap).confine(
            ["/bin/sh", "-c", "echo ok > probe && test -s probe"], cwd=Path(folder))
        try:
            ran = subprocess.run(argv, capture_output=True, text=True, timeout=30,
                                 stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as error:
            return f"bubblewrap ({bwrap}) could not run: {error}"
    if ran.returncode != 0:
        said = (ran.stderr.strip().splitlines() or [f"exit {ran.returncode}"])[-1]
        return f"bubblewrap ({bwrap}) can't build the sandbox here: {said}"
    return None


def sandbox_for(settings: Settings) -> Sandbox:
    """The sandbox these settings ask for, as this machine allows it (never raises: a refusal
    is carried, said in the trace and raised when a command would run)."""
    mode = SandboxMode(settings.sandbox)
    source = settings.sources.get("sandbox", "default")
    hidden = tuple(sorted({Path(os.path.realpath(settings.data_dir)),
                           *([Path(os.path.realpath(settings.config_file)).parent]
                             if settings.config_file else [])}))
    readable = tuple(Path(os.path.realpath(p)) for p in settings.sandbox_read)
    if mode is SandboxMode.OFF:
        return Sandbox(mode, f"RUFLO_SANDBOX=off, {source}")
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        why = "bubblewrap (bwrap) is not installed"
    else:
        why = probe(bwrap) or ""
        if not why:
            return Sandbox(mode, source, bwrap=bwrap, readable=readable, hidden=hidden)
    return Sandbox(mode, source, refusal=f"{why}; {HOW_TO_FIX}")


_current: Sandbox | None = None


def use_sandbox(sandbox: Sandbox | None) -> None:
    """Make `sandbox` the one this process's commands use (None: settle it again from the
    settings on the next command)."""
    global _current
    _current = sandbox


def current_sandbox() -> Sandbox:
    """The sandbox of this process: the one set by `use_sandbox`, else the one the settings
    ask for (read once)."""
    global _current
    if _current is None:
        from ruflo.config import load_settings

        _current = sandbox_for(load_settings())
    return _current


def sandbox_trace(settings: Settings) -> list[str]:
    """The boot trace's line about commands; the sandbox it names becomes the process's."""
    sandbox = sandbox_for(settings)
    use_sandbox(sandbox)
    return [sandbox.describe()]
