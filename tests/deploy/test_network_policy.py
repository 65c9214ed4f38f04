"""The rendered NetworkPolicies, evaluated (netpol.py) on a model cluster whose ruflo pods carry
the labels the rendered workloads give them: the ruflo pod and the workers reach the gateway,
Postgres and DNS and nothing else; the web port takes connections from the ingress controller's
namespace only; the shell's ports from the LoadBalancer's clients; Postgres answers ruflo alone.
Hostile: an edit that opens egress, widens ingress or drops a policy type is caught."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from deploy_files import K8S
from netpol import Cluster, Outside, Pod, in_block, selects
from rendering import named, render, render_with, template_labels

GATEWAY_PORT = 4000
WEB, SSH = 3000, 2222
ANYWHERE = Outside("1.1.1.1")
PROVIDER = Outside("203.0.113.10")
"""A model provider's address (documentation range): what a bypass of the gateway would dial."""
TELEGRAM = Outside("149.154.167.220")
LAPTOP = Outside("198.51.100.7")


def cluster(documents: list[dict[str, Any]]) -> Cluster:
    """The rendered policies on a cluster with ruflo's pods (labels as rendered), the gateway,
    DNS, the ingress controller, KEDA, Prometheus and a stranger's pod."""
    pods = [
        Pod("ruflo", "ruflo-system", template_labels(documents, "Deployment", "ruflo"),
            "10.42.0.10", {"http": WEB, "ssh": SSH}),
        Pod("ruflo-worker", "ruflo-system",
            template_labels(documents, "Deployment", "ruflo-worker"), "10.42.0.11"),
        Pod("ruflo-db", "ruflo-system",
            template_labels(documents, "StatefulSet", "ruflo-db-postgresql"), "10.42.0.12"),
        Pod("bitnami-db", "ruflo-system", {"app.kubernetes.io/name": "postgresql",
                                           "app.kubernetes.io/instance": "ruflo-db"},
            "10.42.0.13"),
        Pod("coredns", "kube-system", {"k8s-app": "kube-dns"}, "10.42.0.2"),
        Pod("litellm", "litellm", {"app": "litellm"}, "10.42.1.5"),
        Pod("traefik", "traefik", {"app.kubernetes.io/name": "traefik"}, "10.42.2.7"),
        Pod("keda-operator", "keda", {"app": "keda-operator"}, "10.42.4.4"),
        Pod("prometheus", "monitoring", {"app.kubernetes.io/name": "prometheus"}, "10.42.5.5"),
        Pod("stranger", "default", {"app": "anything"}, "10.42.3.3"),
        Pod("stranger-here", "ruflo-system", {"app": "debug"}, "10.42.0.99"),
    ]
    policies = [doc for doc in documents if doc["kind"] == "NetworkPolicy"]
    return Cluster(namespaces={}, pods=pods, policies=policies)


def pod(world: Cluster, name: str) -> Pod:
    return next(p for p in world.pods if p.name == name)


def violations(world: Cluster) -> list[str]:
    """Every way the policies differ from what docs/deploy.md promises; [] when they keep it."""
    found: list[str] = []

    def expect(allowed: bool, source: Pod | Outside, target: Pod | Outside, port: int,
               protocol: str = "TCP") -> None:
        if world.can_connect(source, target, port, protocol) != allowed:
            what = "allowed" if allowed else "refused"
            src = source.name if isinstance(source, Pod) else source.ip
            dst = target.name if isinstance(target, Pod) else target.ip
            found.append(f"{src} -> {dst}:{port}/{protocol} should be {what}")

    dns, gateway = pod(world, "coredns"), pod(world, "litellm")
    for name in ("ruflo", "ruflo-worker"):
        me = pod(world, name)
        expect(True, me, gateway, GATEWAY_PORT)
        expect(True, me, pod(world, "ruflo-db"), 5432)
        expect(True, me, pod(world, "bitnami-db"), 5432)
        expect(True, me, dns, 53, "UDP")
        expect(True, me, dns, 53, "TCP")
        expect(False, me, ANYWHERE, 443)
        expect(False, me, ANYWHERE, 53, "UDP")
        expect(False, me, PROVIDER, 443)
        expect(False, me, PROVIDER, GATEWAY_PORT)
        expect(False, me, gateway, 22)
        expect(False, me, pod(world, "stranger"), 80)
        expect(False, me, TELEGRAM, 443)
    ruflo = pod(world, "ruflo")
    expect(True, pod(world, "traefik"), ruflo, WEB)
    expect(False, pod(world, "stranger"), ruflo, WEB)
    expect(False, pod(world, "stranger-here"), ruflo, WEB)
    expect(False, pod(world, "litellm"), ruflo, WEB)
    expect(False, LAPTOP, ruflo, WEB)
    expect(True, LAPTOP, ruflo, SSH)
    expect(True, LAPTOP, ruflo, 60016, "UDP")
    expect(True, LAPTOP, ruflo, 60031, "UDP")
    expect(False, LAPTOP, ruflo, 60032, "UDP")
    expect(False, pod(world, "traefik"), pod(world, "ruflo-worker"), WEB)
    expect(False, LAPTOP, pod(world, "ruflo-worker"), SSH)
    expect(False, pod(world, "stranger"), pod(world, "ruflo-db"), 5432)
    expect(False, pod(world, "stranger-here"), pod(world, "ruflo-db"), 5432)
    expect(False, pod(world, "ruflo-db"), ANYWHERE, 443)
    return found


def test_the_rendered_policies_keep_every_promise(rendered: list[dict[str, Any]]) -> None:
    assert violations(cluster(rendered)) == []


def test_the_single_pod_setup_has_the_same_policies(rendered: list[dict[str, Any]]) -> None:
    alone = [doc for doc in render(K8S) if doc["kind"] == "NetworkPolicy"]
    assert alone == [doc for doc in rendered if doc["kind"] == "NetworkPolicy"]


def test_notify_allowance_opens_telegram_and_nothing_more(tmp_path: Path) -> None:
    documents = render_with(tmp_path, K8S / "overlays" / "postgres-workers", ["notify-egress"])
    world = cluster(documents)
    for name in ("ruflo", "ruflo-worker"):
        assert world.can_connect(pod(world, name), TELEGRAM, 443)
        assert not world.can_connect(pod(world, name), TELEGRAM, 80)
    assert violations(world) == [f"{name} -> {TELEGRAM.ip}:443/TCP should be refused"
                                 for name in ("ruflo", "ruflo-worker")]


def test_keda_and_prometheus_components_open_only_their_own_way_in(tmp_path: Path) -> None:
    keda = cluster(render_with(tmp_path / "keda", K8S / "overlays" / "postgres-workers",
                               ["keda-workers"]))
    assert keda.can_connect(pod(keda, "keda-operator"), pod(keda, "ruflo-db"), 5432)
    assert not keda.can_connect(pod(keda, "keda-operator"), pod(keda, "ruflo"), WEB)
    assert violations(keda) == []
    hpa = cluster(render_with(tmp_path / "hpa", K8S / "overlays" / "postgres-workers",
                              ["worker-hpa"]))
    assert hpa.can_connect(pod(hpa, "prometheus"), pod(hpa, "ruflo"), WEB)
    assert not hpa.can_connect(pod(hpa, "prometheus"), pod(hpa, "ruflo-db"), 5432)
    assert violations(hpa) == []


# -- hostile edits -----------------------------------------------------------------------------

def edited(documents: list[dict[str, Any]], name: str) -> tuple[list[dict[str, Any]],
                                                               dict[str, Any]]:
    """A deep copy of the documents and, in it, the NetworkPolicy `name` to edit."""
    copied = copy.deepcopy(documents)
    return copied, named(copied, "NetworkPolicy", name)


def test_an_edit_that_opens_egress_is_caught(rendered: list[dict[str, Any]]) -> None:
    documents, egress = edited(rendered, "ruflo-egress")
    egress["spec"]["egress"].append({"to": [{"ipBlock": {"cidr": "0.0.0.0/0",
                                                          "except": ["10.0.0.0/8"]}}],
                                     "ports": [{"protocol": "TCP", "port": 443}]})
    found = violations(cluster(documents))
    assert "ruflo -> 1.1.1.1:443/TCP should be refused" in found
    assert "ruflo-worker -> 203.0.113.10:443/TCP should be refused" in found
    assert "ruflo -> stranger:80/TCP should be refused" not in found


def test_a_rule_without_ports_opens_every_port_and_is_caught(
        rendered: list[dict[str, Any]]) -> None:
    documents, egress = edited(rendered, "ruflo-egress")
    del egress["spec"]["egress"][1]["ports"]  # the gateway's namespace, on any port
    assert violations(cluster(documents)) == [
        f"{name} -> litellm:22/TCP should be refused" for name in ("ruflo", "ruflo-worker")]


def test_widened_web_ingress_is_caught(rendered: list[dict[str, Any]]) -> None:
    documents, web = edited(rendered, "ruflo-web-ingress")
    web["spec"]["ingress"][0]["from"] = [{"namespaceSelector": {}}]
    found = violations(cluster(documents))
    assert "stranger -> ruflo:3000/TCP should be refused" in found
    assert "litellm -> ruflo:3000/TCP should be refused" in found


def test_dropping_the_default_deny_and_egress_policy_is_caught(
        rendered: list[dict[str, Any]]) -> None:
    documents = [doc for doc in copy.deepcopy(rendered)
                 if doc["metadata"]["name"] not in ("default-deny", "ruflo-egress")
                 or doc["kind"] != "NetworkPolicy"]
    assert "ruflo -> 1.1.1.1:443/TCP should be refused" in violations(cluster(documents))


def test_a_policy_type_dropped_is_caught(rendered: list[dict[str, Any]]) -> None:
    """Egress rules under policyTypes [Ingress] are ignored: the deny-all then cuts the gateway."""
    documents, egress = edited(rendered, "ruflo-egress")
    egress["spec"]["policyTypes"] = ["Ingress"]
    assert "ruflo -> litellm:4000/TCP should be allowed" in violations(cluster(documents))


# -- the evaluator itself ----------------------------------------------------------------------

def test_selectors_and_blocks_follow_the_kubernetes_rules() -> None:
    labels = {"app": "a", "tier": "web"}
    assert selects({}, labels)
    assert selects({"matchLabels": {"app": "a"}}, labels)
    assert not selects({"matchLabels": {"app": "b"}}, labels)
    assert selects({"matchExpressions": [{"key": "app", "operator": "In", "values": ["a"]}]},
                   labels)
    assert not selects({"matchExpressions": [{"key": "tier", "operator": "NotIn",
                                              "values": ["web"]}]}, labels)
    assert selects({"matchExpressions": [{"key": "zone", "operator": "DoesNotExist"}]}, labels)
    assert not selects({"matchExpressions": [{"key": "zone", "operator": "Exists"}]}, labels)
    block = {"cidr": "10.0.0.0/8", "except": ["10.42.0.0/16"]}
    assert in_block(block, "10.1.2.3")
    assert not in_block(block, "10.42.0.10")
    assert not in_block(block, "1.1.1.1")
    assert not in_block({"cidr": "0.0.0.0/0"}, "2001:db8::1")


def test_pod_and_namespace_selectors_in_one_entry_mean_both() -> None:
    here = Pod("a", "one", {"role": "client"}, "10.0.0.1")
    there = Pod("b", "two", {"role": "client"}, "10.0.0.2")
    other = Pod("c", "two", {"role": "other"}, "10.0.0.3")
    server = Pod("s", "one", {"role": "server"}, "10.0.0.4")
    both = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "p", "namespace": "one"},
            "spec": {"podSelector": {"matchLabels": {"role": "server"}},
                     "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {
                         "kubernetes.io/metadata.name": "two"}},
                         "podSelector": {"matchLabels": {"role": "client"}}}]}]}}
    world = Cluster({}, [here, there, other, server], [both])
    assert world.can_connect(there, server, 80)
    assert not world.can_connect(other, server, 80)
    assert not world.can_connect(here, server, 80), "namespace two only"
    assert world.can_connect(server, here, 80), "no Egress policy: egress open"
