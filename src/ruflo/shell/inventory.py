"""The declared tool inventory (`inventory.yaml`): what each package manager should have, and the
`removed:` block, the only way to uninstall. Depends on PyYAML, packaging and ruflo.errors.

Every problem is a ShellError naming the file and line; a file that can't be read or parsed
changes nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from ruflo.errors import ShellError

MANAGERS = ("mise", "npm-global", "pipx", "cargo")
"""In the order they are applied: runtimes first, since the others run on them."""
REMOVED = "removed"

_MISE = re.compile(r"^(?P<name>[A-Za-z0-9][\w.:/+-]*?)(?:@(?P<version>[\w.+~-]+))?$")
_NPM = re.compile(r"^(?P<name>(?:@[a-z0-9][\w.~-]*/)?[a-z0-9][\w.~-]*)(?:@(?P<version>[^\s@]+))?$")
_CARGO = re.compile(r"^(?P<name>[A-Za-z0-9][\w-]*)(?:@(?P<version>[\w.+^~=<>*-]+))?$")


@dataclass(frozen=True, slots=True)
class PackageSpec:
    """One entry of the inventory, as written and as understood."""

    manager: str
    raw: str
    """The entry exactly as written (used in labels and commands)."""
    name: str
    """What the manager lists it under (pipx names are PEP 503 normalised for comparing)."""
    version: str | None = None
    """The version, range or dist-tag asked for; None for any."""
    line: int = 0

    @property
    def label(self) -> str:
        return f"{self.manager}:{self.raw}"


@dataclass(frozen=True, slots=True)
class Inventory:
    path: Path
    wanted: dict[str, tuple[PackageSpec, ...]] = field(default_factory=dict)
    """Manager -> entries to have installed."""
    removed: dict[str, tuple[PackageSpec, ...]] = field(default_factory=dict)
    """Manager -> entries to uninstall."""

    def entries(self, manager: str) -> tuple[tuple[PackageSpec, ...], tuple[PackageSpec, ...]]:
        return self.wanted.get(manager, ()), self.removed.get(manager, ())

    @property
    def size(self) -> int:
        return sum(map(len, self.wanted.values())) + sum(map(len, self.removed.values()))


def parse_spec(manager: str, raw: str, line: int = 0, where: str = "") -> PackageSpec:
    """Understand one entry; ShellError (naming `where`) when it is not a valid entry."""

    def bad(why: str) -> ShellError:
        return ShellError(f"{where}{manager} entry {raw!r} is not valid: {why}; nothing was changed")

    text = raw.strip()
    if not text:
        raise bad("it is empty")
    if manager == "mise":
        match = _MISE.match(text)
        if not match:
            raise bad("write it as tool@version, e.g. node@20")
        return PackageSpec(manager, text, match["name"], match["version"], line)
    if manager == "npm-global":
        match = _NPM.match(text)
        if not match:
            raise bad("write it as name, name@version, name@tag or @scope/name@version "
                      "(registry packages only, lower case)")
        return PackageSpec(manager, text, match["name"], match["version"], line)
    if manager == "pipx":
        try:
            requirement = Requirement(text)
        except InvalidRequirement as error:
            raise bad(f"not a Python requirement ({str(error).splitlines()[0]})") from None
        if requirement.marker is not None:
            raise bad("environment markers make no sense for an installed app")
        version = str(requirement.specifier) or None
        return PackageSpec(manager, text, canonicalize_name(requirement.name), version, line)
    if manager == "cargo":
        match = _CARGO.match(text)
        if not match:
            raise bad("write it as crate or crate@version, e.g. ripgrep@14.1.0")
        return PackageSpec(manager, text, match["name"], match["version"], line)
    raise ShellError(f"{where}unknown package manager {manager!r}")


def load_inventory(path: Path) -> Inventory:
    """Read and validate `path`. Raises ShellError for a file that can't be read, is not YAML,
    has an unknown section, a malformed or duplicated entry, or lists a package both to install
    and under `removed:`."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        raise ShellError(f"inventory {path} can't be read ({reason}); nothing was changed") from None
    return parse_inventory(text, path)


def parse_inventory(text: str, path: Path) -> Inventory:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error)
        raise ShellError(f"inventory {path}{where}: not valid YAML ({problem}); "
                         "nothing was changed") from None
    if root is None:
        return Inventory(path)
    if not isinstance(root, yaml.MappingNode):
        raise ShellError(f"inventory {path} line {root.start_mark.line + 1}: expected sections "
                         f"({', '.join((*MANAGERS, REMOVED))}); nothing was changed")
    wanted: dict[str, tuple[PackageSpec, ...]] = {}
    removed: dict[str, tuple[PackageSpec, ...]] = {}
    for key, value in _pairs(root, path, "section"):
        if key in MANAGERS:
            wanted[key] = _entries(key, value, path)
        elif key == REMOVED:
            if _is_null(value):
                continue
            if not isinstance(value, yaml.MappingNode):
                raise ShellError(f"inventory {path} line {value.start_mark.line + 1}: "
                                 f"`removed:` must map managers to lists; nothing was changed")
            for manager, entries in _pairs(value, path, "section under removed:"):
                if manager not in MANAGERS:
                    raise ShellError(_unknown(path, value, manager, "under removed:"))
                removed[manager] = _entries(manager, entries, path)
        else:
            raise ShellError(_unknown(path, root, key, ""))
    for manager in MANAGERS:
        keep = {spec.name: spec for spec in wanted.get(manager, ())}
        for spec in removed.get(manager, ()):
            if spec.name in keep:
                raise ShellError(
                    f"inventory {path} line {spec.line}: {spec.label} is listed under removed: "
                    f"and also to install (line {keep[spec.name].line}); keep one; "
                    "nothing was changed")
    return Inventory(path, wanted, removed)


def _pairs(node: yaml.MappingNode, path: Path, what: str) -> list[tuple[str, yaml.Node]]:
    seen: dict[str, int] = {}
    pairs = []
    for key_node, value_node in node.value:
        line = key_node.start_mark.line + 1
        if not isinstance(key_node, yaml.ScalarNode):
            raise ShellError(f"inventory {path} line {line}: a {what} name must be plain text; "
                             "nothing was changed")
        key = str(key_node.value)
        if key in seen:
            raise ShellError(f"inventory {path} line {line}: {what} {key!r} appears twice "
                             f"(first on line {seen[key]}); nothing was changed")
        seen[key] = line
        pairs.append((key, value_node))
    return pairs


def _unknown(path: Path, node: yaml.MappingNode, key: str, where: str) -> str:
    line = next(k.start_mark.line + 1 for k, _ in node.value if str(k.value) == key)
    return (f"inventory {path} line {line}: unknown section {key!r}{' ' + where if where else ''}"
            f" (known: {', '.join(MANAGERS)}{'' if where else ', ' + REMOVED}); "
            "nothing was changed")


def _is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null")


def _entries(manager: str, node: yaml.Node, path: Path) -> tuple[PackageSpec, ...]:
    if _is_null(node):
        return ()
    if not isinstance(node, yaml.SequenceNode):
        raise ShellError(f"inventory {path} line {node.start_mark.line + 1}: {manager} must be a "
                         "list of entries; nothing was changed")
    specs: list[PackageSpec] = []
    seen: dict[str, int] = {}
    for item in node.value:
        line = item.start_mark.line + 1
        where = f"inventory {path} line {line}: "
        if not isinstance(item, yaml.ScalarNode) or not item.tag.endswith(":str"):
            shown = item.value if isinstance(item, yaml.ScalarNode) else "a nested block"
            raise ShellError(f"{where}{manager} entry {shown!r} must be a name in text "
                             "(quote it, e.g. \"node@20\"); nothing was changed")
        spec = parse_spec(manager, str(item.value), line, where)
        if spec.name in seen:
            raise ShellError(f"{where}{manager} lists {spec.name!r} twice (first on line "
                             f"{seen[spec.name]}); nothing was changed")
        seen[spec.name] = line
        specs.append(spec)
    return tuple(specs)
