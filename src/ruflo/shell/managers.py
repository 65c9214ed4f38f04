"""One PackageManager per tool manager (mise, npm-global, pipx, cargo): how to ask it what is
installed in machine-readable form, how to compare an inventory entry with that, and the commands
that install or remove. Depends on shell.inventory, shell.runner and packaging.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from ruflo.shell.inventory import PackageSpec
from ruflo.shell.package_command import CommandResult, Runner


class ListingFailed(Exception):
    """The manager could not say what is installed (missing, broken, unreadable answer)."""


@dataclass(frozen=True, slots=True)
class Installed:
    """One installed package (mise may list several versions of one tool)."""

    name: str
    version: str
    active: bool = True
    """mise: whether the global config selects it; always True for the others."""
    requested: str | None = None
    """mise: the version as asked for when it was activated (e.g. "20", "stable")."""


class Match(enum.StrEnum):
    PRESENT = "present"
    MISSING = "missing"
    OTHER_VERSION = "other version"
    INACTIVE = "installed but not active"


class PackageManager(Protocol):
    """A seam over one package manager; implementations run commands only through `Runner`."""

    name: str
    program: str

    def list_installed(self, runner: Runner) -> list[Installed]:
        """What is installed now; raises ListingFailed when the manager can't tell."""

    def match(self, spec: PackageSpec, installed: Sequence[Installed]) -> tuple[Match, str]:
        """How the installed packages stand against an entry, and a few words on why."""

    def install_commands(self, spec: PackageSpec, match: Match) -> list[list[str]]: ...

    def remove_commands(self, spec: PackageSpec) -> list[list[str]]: ...

    def said_absent(self, result: CommandResult) -> bool:
        """Whether a failed uninstall failed only because the package was not there."""


# -- version comparison -------------------------------------------------------------------------
_PLAIN_VERSION = re.compile(r"^v?=?(\d+(?:\.(?:\d+|x|\*))*)$")


def plain_version(spec: str | None) -> str | None:
    """"20", "1.2.3", "v1.2", "1.x" -> the comparable part; ranges and dist-tags -> None."""
    if spec is None:
        return None
    match = _PLAIN_VERSION.match(spec.strip())
    return match[1] if match else None


def version_matches(installed: str, wanted: str) -> bool:
    """Prefix match on dot boundaries: "20" matches "20.20.2", "1.2" does not match "1.20"."""
    have = installed.lstrip("v").split("+")[0].split(".")
    want = wanted.split(".")
    if len(want) > len(have):
        return False
    return all(w in ("x", "*") or w == h for w, h in zip(want, have, strict=False))


def _by_name(installed: Sequence[Installed], name: str) -> list[Installed]:
    return [item for item in installed if item.name == name]


def _simple_match(spec: PackageSpec, installed: Sequence[Installed]) -> tuple[Match, str]:
    """npm and cargo: by name, then by version when the entry asks for a plain version. A
    dist-tag (@alpha) or a range can't be checked against a version number, so any installed
    version counts: reinstalling every boot is worse than trusting the name."""
    found = _by_name(installed, spec.name)
    if not found:
        return Match.MISSING, "not installed"
    versions = ", ".join(item.version for item in found)
    wanted = plain_version(spec.version)
    if spec.version is None:
        return Match.PRESENT, f"installed {versions}"
    if wanted is None:
        return Match.PRESENT, f"installed {versions} ({spec.version!r} is a tag or range: name counts)"
    if any(version_matches(item.version, wanted) for item in found):
        return Match.PRESENT, f"installed {versions}"
    return Match.OTHER_VERSION, f"installed {versions}, wants {spec.version}"


def _parse_json(result: CommandResult, what: str) -> Any:
    if result.error:
        raise ListingFailed(result.error)
    try:
        return json.loads(result.stdout)
    except json.JSONDecodeError:
        tail = result.tail(5) or "no output"
        raise ListingFailed(f"{what} answered {result.status} without JSON: {tail}") from None


# -- mise -------------------------------------------------------------------------------------
class Mise:
    """Runtimes. `mise install` does not activate: until `mise use --global` writes the global
    config, shims fall through to the system's node/python, so an entry counts as present only
    when it is installed *and* active."""

    name = "mise"
    program = "mise"

    def list_installed(self, runner: Runner) -> list[Installed]:
        result = runner.run([self.program, "ls", "--json"])
        answer = _parse_json(result, "mise ls --json")
        if not result.ok or not isinstance(answer, dict):
            raise ListingFailed(f"mise ls --json answered {result.status}: {result.tail(5)}")
        installed = []
        for tool, entries in answer.items():
            for entry in entries if isinstance(entries, list) else []:
                if not isinstance(entry, dict) or not entry.get("version"):
                    continue
                if not entry.get("installed", True) and not entry.get("active"):
                    continue
                installed.append(Installed(
                    str(tool), str(entry["version"]),
                    active=bool(entry.get("active")) and bool(entry.get("installed", True)),
                    requested=entry.get("requested_version")))
        return installed

    def _matching(self, spec: PackageSpec, installed: Sequence[Installed]) -> list[Installed]:
        found = _by_name(installed, spec.name)
        if spec.version is None:
            return found
        wanted = plain_version(spec.version)
        return [item for item in found
                if item.requested == spec.version
                or (wanted is not None and version_matches(item.version, wanted))
                or (wanted is None and item.requested is None)]

    def match(self, spec: PackageSpec, installed: Sequence[Installed]) -> tuple[Match, str]:
        found = self._matching(spec, installed)
        if any(item.active for item in found):
            return Match.PRESENT, "installed " + ", ".join(i.version for i in found if i.active)
        if found:
            return Match.INACTIVE, (f"installed {found[0].version} but not active globally "
                                    "(later managers would fall through to system tools)")
        others = _by_name(installed, spec.name)
        if others:
            return Match.OTHER_VERSION, (f"installed {', '.join(i.version for i in others)}, "
                                         f"wants {spec.version}")
        return Match.MISSING, "not installed"

    def install_commands(self, spec: PackageSpec, match: Match) -> list[list[str]]:
        target = f"{spec.name}@{spec.version}" if spec.version else spec.name
        use = [self.program, "use", "--global", target]
        if match is Match.INACTIVE:
            return [use]
        return [[self.program, "install", target], use]

    def remove_commands(self, spec: PackageSpec) -> list[list[str]]:
        target = f"{spec.name}@{spec.version}" if spec.version else spec.name
        return [[self.program, "unuse", "--global", target]]

    def said_absent(self, result: CommandResult) -> bool:
        text = result.output.lower()
        return "not found in" in text or "is not installed" in text or "no versions" in text


# -- npm --------------------------------------------------------------------------------------
class NpmGlobal:
    """Global npm packages. Asks for the whole list once (`npm ls -g --depth=0 --json`, which
    exits 1 with no `dependencies` when nothing is installed) and compares names: `npm ls -g
    NAME@alpha` exits 1 even when NAME is installed."""

    name = "npm-global"
    program = "npm"

    def list_installed(self, runner: Runner) -> list[Installed]:
        result = runner.run([self.program, "ls", "-g", "--depth=0", "--json"])
        answer = _parse_json(result, "npm ls -g")
        if not isinstance(answer, dict):
            raise ListingFailed(f"npm ls -g answered {result.status} with unexpected JSON")
        dependencies = answer.get("dependencies") or {}
        if not dependencies and not result.ok and isinstance(answer.get("error"), dict):
            raise ListingFailed(f"npm ls -g failed: {answer['error'].get('summary', answer['error'])}")
        return [Installed(str(name), str(info.get("version", "")))
                for name, info in dependencies.items() if isinstance(info, dict)]

    def match(self, spec: PackageSpec, installed: Sequence[Installed]) -> tuple[Match, str]:
        return _simple_match(spec, installed)

    def install_commands(self, spec: PackageSpec, match: Match) -> list[list[str]]:
        return [[self.program, "install", "--global", spec.raw]]

    def remove_commands(self, spec: PackageSpec) -> list[list[str]]:
        return [[self.program, "uninstall", "--global", spec.name]]

    def said_absent(self, result: CommandResult) -> bool:
        return False  # npm uninstall of an absent package exits 0


# -- pipx -------------------------------------------------------------------------------------
class Pipx:
    """Python apps, each in its own venv. Entries are requirements (`black==24.1`) compared by
    normalised name and version specifier, never as strings."""

    name = "pipx"
    program = "pipx"

    def list_installed(self, runner: Runner) -> list[Installed]:
        result = runner.run([self.program, "list", "--json"])
        answer = _parse_json(result, "pipx list --json")
        if not result.ok or not isinstance(answer, dict):
            raise ListingFailed(f"pipx list --json answered {result.status}: {result.tail(5)}")
        installed = []
        for venv, info in (answer.get("venvs") or {}).items():
            package = ((info or {}).get("metadata") or {}).get("main_package") or {}
            name = package.get("package") or venv
            installed.append(Installed(canonicalize_name(str(name)),
                                       str(package.get("package_version", ""))))
        return installed

    def match(self, spec: PackageSpec, installed: Sequence[Installed]) -> tuple[Match, str]:
        found = _by_name(installed, spec.name)
        if not found:
            return Match.MISSING, "not installed"
        version = found[0].version
        if not spec.version:
            return Match.PRESENT, f"installed {version}"
        try:
            fits = SpecifierSet(spec.version).contains(Version(version), prereleases=True)
        except (InvalidSpecifier, InvalidVersion):
            fits = False
        if fits:
            return Match.PRESENT, f"installed {version}"
        return Match.OTHER_VERSION, f"installed {version}, wants {spec.version}"

    def install_commands(self, spec: PackageSpec, match: Match) -> list[list[str]]:
        # `pipx install` of an installed app exits 0 and changes nothing: force a version change.
        force = ["--force"] if match is Match.OTHER_VERSION else []
        return [[self.program, "install", *force, spec.raw]]

    def remove_commands(self, spec: PackageSpec) -> list[list[str]]:
        return [[self.program, "uninstall", spec.name]]

    def said_absent(self, result: CommandResult) -> bool:
        text = result.output.lower()
        return "nothing to uninstall" in text or "is not installed" in text


# -- cargo ------------------------------------------------------------------------------------
_CARGO_LIST_LINE = re.compile(r"^(?P<name>\S+) v(?P<version>\S+?)(?: \(.*\))?:$")


class Cargo:
    """Rust binaries. Reads `$CARGO_HOME/.crates2.json` when present, else `cargo install
    --list`; `cargo uninstall` of an absent crate exits 101."""

    name = "cargo"
    program = "cargo"

    def list_installed(self, runner: Runner) -> list[Installed]:
        env = runner.env()
        cargo_home = Path(env.get("CARGO_HOME") or Path(env.get("HOME", "~")).expanduser() / ".cargo")
        crates = cargo_home / ".crates2.json"
        if crates.is_file():
            try:
                answer = json.loads(crates.read_text(encoding="utf-8"))
            except (OSError, ValueError) as error:
                raise ListingFailed(f"{crates} can't be read: {error}") from None
            installed = []
            for key in (answer.get("installs") or {}) if isinstance(answer, dict) else {}:
                parts = str(key).split(" ")
                if len(parts) >= 2:
                    installed.append(Installed(parts[0], parts[1]))
            return installed
        result = runner.run([self.program, "install", "--list"])
        if not result.ok:
            raise ListingFailed(f"cargo install --list answered {result.status}: {result.tail(5)}")
        return [Installed(m["name"], m["version"]) for line in result.stdout.splitlines()
                if (m := _CARGO_LIST_LINE.match(line.rstrip()))]

    def match(self, spec: PackageSpec, installed: Sequence[Installed]) -> tuple[Match, str]:
        return _simple_match(spec, installed)

    def install_commands(self, spec: PackageSpec, match: Match) -> list[list[str]]:
        command = [self.program, "install", spec.name]
        if spec.version:
            command += ["--version", spec.version]
        if match is Match.OTHER_VERSION:
            command.append("--force")
        return [command]

    def remove_commands(self, spec: PackageSpec) -> list[list[str]]:
        return [[self.program, "uninstall", spec.name]]

    def said_absent(self, result: CommandResult) -> bool:
        return result.returncode == 101 and "did not match any packages" in result.output


def default_managers() -> list[PackageManager]:
    """In the order they are applied."""
    return [Mise(), NpmGlobal(), Pipx(), Cargo()]


def removal_present(manager: PackageManager, spec: PackageSpec,
                    installed: Sequence[Installed]) -> bool:
    """Whether a `removed:` entry is still there to remove (by name, and by version when one
    is given and comparable)."""
    if isinstance(manager, Mise):
        return bool(manager._matching(spec, installed))
    found = _by_name(installed, spec.name)
    if not found or spec.version is None:
        return bool(found)
    wanted = plain_version(spec.version)
    if wanted is not None:
        return any(version_matches(item.version, wanted) for item in found)
    if manager.name == "pipx":
        try:
            specifier = SpecifierSet(spec.version)
            return any(specifier.contains(Version(i.version), prereleases=True) for i in found)
        except (InvalidSpecifier, InvalidVersion):
            return True
    return True


__all__ = ["Cargo", "Installed", "ListingFailed", "Match", "Mise", "NpmGlobal", "PackageManager",
           "Pipx", "default_managers", "removal_present"]
