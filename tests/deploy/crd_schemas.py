"""Validating custom resources against their projects' published CRDs (vendored in crds/, their
sources and versions in crds/README.md).

A CRD's `openAPIV3Schema` is an OpenAPI 3.0 schema with Kubernetes extensions. It is turned into
a JSON Schema (draft 4, whose keywords OpenAPI 3.0 shares) the way the API server reads it:

- `x-kubernetes-int-or-string: true` accepts an integer or a string;
- `nullable: true` accepts null;
- an object with `properties` and no `additionalProperties` refuses fields it does not list,
  unless it has `x-kubernetes-preserve-unknown-fields: true`. That is the API server's strict
  field validation (`kubectl apply` asks for it by default): a misspelled field is an error
  there, not silently dropped, and so it is here.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

CRD_DIR = Path(__file__).resolve().parent / "crds"


@dataclass(frozen=True)
class CrdVersion:
    source: Path
    group: str
    version: str
    kind: str
    served: bool
    schema: dict[str, Any]


@cache
def crd_versions() -> dict[tuple[str, str], CrdVersion]:
    """(apiVersion, kind) -> the CRD version that serves it, from every vendored CRD file."""
    found: dict[tuple[str, str], CrdVersion] = {}
    for path in sorted(CRD_DIR.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            for version in spec["versions"]:
                schema = version["schema"]["openAPIV3Schema"]
                item = CrdVersion(path, spec["group"], version["name"], spec["names"]["kind"],
                                  bool(version.get("served")), json_schema(schema))
                found[(f"{item.group}/{item.version}", item.kind)] = item
    return found


def crd_kinds() -> set[str]:
    return {kind for _, kind in crd_versions()}


def json_schema(openapi: dict[str, Any]) -> dict[str, Any]:
    """The JSON Schema (draft 4) the API server's checks amount to; see the module docstring."""
    return _convert(copy.deepcopy(openapi))


SCHEMA_MAPS = ("properties", "patternProperties", "definitions")
SCHEMA_LISTS = ("allOf", "anyOf", "oneOf")
SCHEMA_ONES = ("items", "additionalProperties", "not")


def _convert(node: dict[str, Any]) -> dict[str, Any]:
    """One schema node, and the schemas under it (only keywords that hold schemas are walked:
    a field may be named `nullable` or `type`)."""
    for key in SCHEMA_MAPS:
        if isinstance(node.get(key), dict):
            node[key] = {name: _convert(sub) for name, sub in node[key].items()}
    for key in SCHEMA_LISTS:
        if isinstance(node.get(key), list):
            node[key] = [_convert(sub) for sub in node[key]]
    for key in SCHEMA_ONES:
        if isinstance(node.get(key), dict):
            node[key] = _convert(node[key])
    if node.pop("x-kubernetes-int-or-string", False):
        node.pop("type", None)
        node.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    if node.pop("nullable", False) and "type" in node:
        node["type"] = [node["type"], "null"]
    preserve = node.pop("x-kubernetes-preserve-unknown-fields", False)
    if node.get("type") == "object" and "properties" in node and not preserve:
        node.setdefault("additionalProperties", False)
    for key in [k for k in node if k.startswith("x-kubernetes-")]:
        del node[key]
    return node


def crd_problems(doc: dict[str, Any]) -> list[str]:
    """Why `doc` would be refused by a cluster with these CRDs; [] when it would be accepted."""
    from jsonschema import Draft4Validator

    key = (str(doc.get("apiVersion")), str(doc.get("kind")))
    crd = crd_versions().get(key)
    if crd is None:
        return [f"{key[1]} {key[0]}: no vendored CRD defines it"]
    if not crd.served:
        return [f"{key[1]} {key[0]}: {crd.source.name} no longer serves this version"]
    validator = Draft4Validator(crd.schema)
    return [f"{key[1]}/{doc.get('metadata', {}).get('name')}: "
            f"{'.'.join(str(p) for p in error.absolute_path) or '(root)'}: {error.message}"
            for error in sorted(validator.iter_errors(doc), key=lambda e: list(e.path))]
