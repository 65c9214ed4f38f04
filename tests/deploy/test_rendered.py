"""Every object kustomize renders, from every kustomization of deploy/ and with every optional
component added, is one a Kubernetes 1.30 cluster with the CRDs in tests/deploy/crds accepts:
core kinds against kubernetes-validate's 1.30 schemas, custom resources against their projects'
published CRDs (crd_schemas.py), both strict about unknown fields."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from crd_schemas import crd_kinds, crd_problems
from deploy_files import DEPLOY, K8S, KUBERNETES_VERSION
from rendering import OPTIONAL_COMPONENTS, named, render, render_with, renderable_dirs


def problems(documents: list[dict[str, Any]]) -> list[str]:
    """Why a 1.30 cluster with the vendored CRDs would refuse any of `documents`."""
    import kubernetes_validate

    found: list[str] = []
    for doc in documents:
        if doc["kind"] in crd_kinds():
            found += crd_problems(doc)
            continue
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            found.append(f"{doc['kind']}/{doc['metadata'].get('name')}: {error.message}")
    return found


@pytest.mark.parametrize("directory", renderable_dirs(), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_every_rendered_object_validates(directory: Path) -> None:
    assert problems(render(directory)) == []


@pytest.mark.parametrize("components", [
    pytest.param(["ingress", "notify-egress", "worker-hpa"], id="ingress+notify+hpa"),
    pytest.param(["traefik-forward-auth", "cilium-egress", "cilium-shell-registries",
                  "keda-workers"], id="seed-cluster"),
])
def test_optional_components_render_and_validate(tmp_path: Path, components: list[str]) -> None:
    documents = render_with(tmp_path, K8S / "overlays" / "workers", components)
    assert problems(documents) == []
    assert {doc["metadata"].get("namespace") for doc in documents
            if doc["kind"] != "Namespace"} == {"ruflo-system"}


def test_every_optional_component_is_rendered_by_a_test() -> None:
    on_disk = {p.parent.name for p in (K8S / "components").glob("*/kustomization.yaml")}
    included = {"external-secrets", "network-policy"}
    assert on_disk == included | set(OPTIONAL_COMPONENTS)


def test_custom_resources_of_every_vendored_crd_are_used() -> None:
    """Each vendored CRD checks something: the cluster example and Argo CD render its kinds."""
    kinds = {doc["kind"] for doc in render(K8S / "overlays" / "cluster-example")}
    kinds |= {doc["kind"] for doc in render(DEPLOY / "argocd")}
    assert crd_kinds() <= kinds


def test_validation_refuses_broken_custom_resources() -> None:
    """Hostile: a misspelt field, a wrong type, a missing required field and an unserved
    version are each refused, as the API server would."""
    documents = render(K8S / "overlays" / "cluster-example")
    route = copy.deepcopy(named(documents, "IngressRoute", "ruflo"))
    route["spec"]["routes"][0]["middleware"] = route["spec"]["routes"][0].pop("middlewares")
    scaled = copy.deepcopy(named(documents, "ScaledObject", "ruflo-worker"))
    scaled["spec"]["maxReplicaCount"] = "eight"
    policy = copy.deepcopy(named(documents, "CiliumNetworkPolicy", "ruflo-fqdn-egress"))
    del policy["spec"]["endpointSelector"]
    secret = copy.deepcopy(named(documents, "ExternalSecret", "ruflo-gateway"))
    secret["apiVersion"] = "external-secrets.io/v1beta1"
    auth = copy.deepcopy(named(documents, "Middleware", "authentik-forwardauth"))
    auth["spec"]["forwardAuth"]["authResponseHeader"] = ["X-authentik-username"]
    found = "\n".join(problems([route, scaled, policy, secret, auth]))
    for expected in ("'middleware' was unexpected", "'eight' is not of type 'integer'",
                     "CiliumNetworkPolicy/ruflo-fqdn-egress", "no longer serves this version",
                     "'authResponseHeader' was unexpected"):
        assert expected in found
    assert problems([named(documents, "IngressRoute", "ruflo")]) == []


def test_validation_refuses_a_broken_core_object(tmp_path: Path) -> None:
    documents = render_with(tmp_path, K8S / "overlays" / "workers", ["worker-hpa"])
    hpa = copy.deepcopy(named(documents, "HorizontalPodAutoscaler", "ruflo-worker"))
    hpa["spec"]["maxReplica"] = hpa["spec"].pop("maxReplicas")
    assert problems([hpa]) != []
