"""Reading deploy/: the kustomization trees, the Kubernetes objects in them, the Dockerfiles, and
the environment variable names ruflo reads. Shared by the tests under tests/deploy/.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
DOCKER = DEPLOY / "docker"
SHELL_FILES = DOCKER / "shell"
KUBERNETES_VERSION = "1.30"
"""The Kubernetes schemas the manifests must satisfy (a version kubernetes-validate ships)."""

KUSTOMIZE_KINDS = {"Kustomization", "Component"}
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}
RUFLO_IMAGE = re.compile(r"(^|/)ruflo-(server|shell)(:|@|$)")

NON_RUFLO_VARS: dict[str, str] = {
    "HOME": "the agent's home in the shell image; sshd and the shells read it",
    "PATH": "puts mise's shims and ~/.local/bin first in the shell image",
    "LANG": "mosh needs a UTF-8 locale",
    "PYTHONUNBUFFERED": "Python: logs reach `kubectl logs` at once",
    "PYTHONDONTWRITEBYTECODE": "Python: no .pyc writes on a read-only root filesystem",
    "PGPASSWORD": "libpq (under psycopg) reads it, keeping the password out of DATABASE_URL",
}
"""Variables in the manifests and Dockerfiles that ruflo's Settings do not read, and why they
are there all the same."""

POSTGRES_IMAGE_VARS: dict[str, str] = {
    "POSTGRES_USER": "the official postgres image creates this role at first start",
    "POSTGRES_DB": "the official postgres image creates this database at first start",
    "POSTGRES_PASSWORD": "the official postgres image sets the role's password from it",
    "PGDATA": "postgres: a subdirectory, since the volume root holds lost+found",
}
"""The Postgres container's own variables (it does not run ruflo)."""


def settings_env_names() -> set[str]:
    """Every environment variable ruflo reads: the Settings fields' names and aliases, plus the
    RUFLO_* variables read outside Settings."""
    from pydantic import AliasChoices

    from ruflo.config import KNOWN_RUFLO_VARS, Settings

    names: set[str] = set(KNOWN_RUFLO_VARS)
    for info in Settings.model_fields.values():
        alias = info.validation_alias
        if isinstance(alias, AliasChoices):
            names.update(str(choice) for choice in alias.choices)
        elif isinstance(alias, str):
            names.add(alias)
    return names


def settings_field_env_names() -> dict[str, tuple[str, ...]]:
    """Settings field -> the variables that set it, first one preferred."""
    from pydantic import AliasChoices

    from ruflo.config import Settings

    fields: dict[str, tuple[str, ...]] = {}
    for name, info in Settings.model_fields.items():
        alias = info.validation_alias
        if isinstance(alias, AliasChoices):
            fields[name] = tuple(str(choice) for choice in alias.choices)
        elif isinstance(alias, str):
            fields[name] = (alias,)
    return fields


# -- Kubernetes ------------------------------------------------------------------------------

def load_documents(path: Path) -> list[dict[str, Any]]:
    """The non-empty YAML documents of a file; each must be a mapping."""
    documents = []
    for index, document in enumerate(yaml.safe_load_all(path.read_text(encoding="utf-8"))):
        if document is None:
            continue
        if not isinstance(document, dict):
            raise AssertionError(f"{path} document {index} is not a mapping")
        documents.append(document)
    return documents


def manifest_files(root: Path = DEPLOY) -> list[Path]:
    return sorted(p for p in root.rglob("*.yaml") if p.is_file()) + sorted(
        p for p in root.rglob("*.yml") if p.is_file())


@dataclass
class Tree:
    """What one kustomization brings together: its objects and its patches, from every file it
    lists, through the kustomizations and components it includes."""

    root: Path
    objects: list[tuple[Path, dict[str, Any]]] = field(default_factory=list)
    patches: list[tuple[Path, dict[str, Any]]] = field(default_factory=list)
    kustomizations: list[Path] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [doc for _, doc in self.objects if doc.get("kind") == kind]

    def named(self, kind: str, name: str) -> dict[str, Any] | None:
        for doc in self.of_kind(kind):
            if doc.get("metadata", {}).get("name") == name:
                return doc
        return None


def kustomization_file(directory: Path) -> Path | None:
    for name in ("kustomization.yaml", "kustomization.yml", "Kustomization"):
        if (directory / name).is_file():
            return directory / name
    return None


def load_tree(directory: Path, tree: Tree | None = None) -> Tree:
    """Follow `resources`, `components` and `patches` from `directory`'s kustomization. Entries
    that do not exist are collected in `missing` rather than raised, so a test can name them."""
    tree = tree or Tree(root=directory)
    file = kustomization_file(directory)
    if file is None:
        tree.missing.append(f"{directory}: no kustomization.yaml")
        return tree
    tree.kustomizations.append(file)
    (spec,) = load_documents(file)
    for key in ("resources", "components"):
        for entry in spec.get(key) or []:
            target = (directory / entry).resolve()
            if target.is_dir():
                load_tree(target, tree)
            elif target.is_file():
                tree.objects.extend((target, doc) for doc in load_documents(target))
            else:
                tree.missing.append(f"{file}: {key} entry {entry!r} does not exist")
    for patch in spec.get("patches") or []:
        if "path" in patch:
            target = (directory / patch["path"]).resolve()
            if target.is_file():
                tree.patches.extend((target, doc) for doc in load_documents(target))
            else:
                tree.missing.append(f"{file}: patch {patch['path']!r} does not exist")
    return tree


def kustomization_dirs() -> list[Path]:
    return sorted(p.parent for p in DEPLOY.rglob("kustomization.yaml"))


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    spec = pod_spec(workload)
    return list(spec.get("initContainers") or []) + list(spec.get("containers") or [])


def workloads(objects: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for doc in objects:
        if doc.get("kind") in WORKLOAD_KINDS:
            yield doc


def runs_ruflo(container: dict[str, Any]) -> bool:
    return bool(RUFLO_IMAGE.search(str(container.get("image", ""))))


def secret_keys(objects: list[dict[str, Any]], name: str) -> set[str] | None:
    """The keys of Secret `name`: from a Secret object, or the target of an ExternalSecret
    (its template's data keys, else its data's secretKeys). None when nothing makes it."""
    for doc in objects:
        meta = doc.get("metadata", {})
        if doc.get("kind") == "Secret" and meta.get("name") == name:
            return set(doc.get("data") or {}) | set(doc.get("stringData") or {})
        if doc.get("kind") == "ExternalSecret":
            target = doc["spec"].get("target", {})
            if target.get("name", meta.get("name")) != name:
                continue
            template = target.get("template", {}).get("data")
            if template:
                return set(template)
            return {item["secretKey"] for item in doc["spec"].get("data") or []}
    return None


def env_names(container: dict[str, Any], objects: list[dict[str, Any]]) -> dict[str, str]:
    """Every variable the container gets -> where it comes from (`env`, a ConfigMap, a Secret)."""
    found = {item["name"]: "env" for item in container.get("env") or []}
    for source in container.get("envFrom") or []:
        if "configMapRef" in source:
            name = source["configMapRef"]["name"]
            config_map = next((doc for doc in objects if doc.get("kind") == "ConfigMap"
                               and doc["metadata"]["name"] == name), None)
            for key in (config_map or {}).get("data") or {}:
                found[source.get("prefix", "") + key] = f"ConfigMap {name}"
        if "secretRef" in source:
            name = source["secretRef"]["name"]
            for key in secret_keys(objects, name) or set():
                found[source.get("prefix", "") + key] = f"Secret {name}"
    return found


# -- Dockerfiles -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Instruction:
    keyword: str
    text: str
    line: int

    def exec_form(self) -> list[str] | None:
        """The JSON array of an exec-form CMD/ENTRYPOINT/RUN, else None."""
        text = self.text.strip()
        if not text.startswith("["):
            return None
        value = json.loads(text)
        assert isinstance(value, list)
        assert all(isinstance(item, str) for item in value)
        return value


def parse_dockerfile(path: Path) -> list[Instruction]:
    """Instructions with their continuation lines joined; comments and blank lines dropped."""
    instructions: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        joined = " ".join(part for part in pending if part)
        pending = []
        keyword, _, rest = joined.partition(" ")
        instructions.append(Instruction(keyword.upper(), rest.strip(), start))
    if pending:
        raise AssertionError(f"{path}: the last instruction ends with a line continuation")
    return instructions


def final_stage(instructions: list[Instruction]) -> list[Instruction]:
    """The instructions of the last FROM stage: what the image is made of at run time."""
    starts = [i for i, item in enumerate(instructions) if item.keyword == "FROM"]
    assert starts, "no FROM"
    return instructions[starts[-1]:]


ENV_PAIR = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)=("(?:[^"\\]|\\.)*"|\S*)')


def env_of(instructions: list[Instruction]) -> dict[str, str]:
    """ENV NAME=value pairs of these instructions (the legacy `ENV NAME value` form too)."""
    values: dict[str, str] = {}
    for item in instructions:
        if item.keyword != "ENV":
            continue
        pairs = ENV_PAIR.findall(item.text)
        if pairs:
            values.update({name: value.strip('"') for name, value in pairs})
        else:
            name, _, value = item.text.partition(" ")
            values[name] = value.strip()
    return values
