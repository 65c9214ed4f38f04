"""A small evaluator of Kubernetes NetworkPolicies (networking.k8s.io/v1), for the subset the
manifests use: podSelector, namespaceSelector (alone or together), ipBlock with except, ports
with protocol, number, name and endPort, and policyTypes.

The rules, as the Kubernetes documentation states them:
- A pod is isolated for egress (ingress) when a policy of its namespace selects it and lists
  Egress (Ingress) in policyTypes. policyTypes defaults to Ingress, plus Egress when the policy
  has egress rules. A pod not isolated in a direction allows everything in it.
- An isolated pod allows a connection when a rule of a policy selecting it matches: a rule
  without `to`/`from` matches every peer, without `ports` every port.
- A peer podSelector alone means pods of the policy's own namespace; namespaceSelector alone,
  every pod of the matching namespaces; both in one entry, the pods matching both.
- A connection from a pod to a pod needs the egress of one and the ingress of the other.

An ipBlock is matched against the peer's address whatever the peer is (Kubernetes leaves ipBlock
for pod addresses to the implementation): that can only allow more, so a proof here that
something is unreachable holds on any conforming implementation.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

Policy = dict[str, Any]


@dataclass(frozen=True)
class Pod:
    name: str
    namespace: str
    labels: dict[str, str]
    ip: str
    ports: dict[str, int] = field(default_factory=dict)
    """Named container ports (name -> number), for policies that name a port."""


@dataclass(frozen=True)
class Outside:
    """An address outside the cluster (a provider's API, a person's laptop)."""

    ip: str


Peer = Pod | Outside


@dataclass
class Cluster:
    namespaces: dict[str, dict[str, str]]
    """Namespace name -> its labels (kubernetes.io/metadata.name is added)."""
    pods: list[Pod]
    policies: list[Policy]

    def namespace_labels(self, name: str) -> dict[str, str]:
        return {**self.namespaces.get(name, {}), "kubernetes.io/metadata.name": name}

    def can_connect(self, source: Peer, target: Peer, port: int, protocol: str = "TCP") -> bool:
        """Whether a connection from `source` to `target`:`port`/`protocol` is allowed."""
        out = (not isinstance(source, Pod)
               or self._allowed(source, target, port, protocol, "Egress"))
        into = (not isinstance(target, Pod)
                or self._allowed(target, source, port, protocol, "Ingress"))
        return out and into

    def _allowed(self, pod: Pod, peer: Peer, port: int, protocol: str, direction: str) -> bool:
        selecting = [p for p in self.policies
                     if p["metadata"].get("namespace") == pod.namespace
                     and direction in policy_types(p)
                     and selects(p["spec"].get("podSelector") or {}, pod.labels)]
        if not selecting:
            return True
        key, peers_key = ("egress", "to") if direction == "Egress" else ("ingress", "from")
        target = peer if direction == "Egress" else pod
        for policy in selecting:
            for rule in policy["spec"].get(key) or []:
                peers = rule.get(peers_key) or []
                if peers and not any(self._peer_matches(entry, peer, policy) for entry in peers):
                    continue
                ports = rule.get("ports") or []
                if not ports or any(port_matches(item, target, port, protocol)
                                    for item in ports):
                    return True
        return False

    def _peer_matches(self, entry: dict[str, Any], peer: Peer, policy: Policy) -> bool:
        if "ipBlock" in entry:
            return in_block(entry["ipBlock"], peer.ip)
        if not isinstance(peer, Pod):
            return False
        if "namespaceSelector" in entry:
            if not selects(entry["namespaceSelector"], self.namespace_labels(peer.namespace)):
                return False
        elif peer.namespace != policy["metadata"].get("namespace"):
            return False
        return selects(entry.get("podSelector") or {}, peer.labels)


def policy_types(policy: Policy) -> list[str]:
    spec = policy["spec"]
    if "policyTypes" in spec:
        return list(spec["policyTypes"])
    return ["Ingress", *(["Egress"] if spec.get("egress") else [])]


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A LabelSelector: matchLabels and matchExpressions, all must hold; {} selects all."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression["key"], expression["operator"]
        values = expression.get("values") or []
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and key in labels and labels[key] in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
        if operator not in ("In", "NotIn", "Exists", "DoesNotExist"):
            raise ValueError(f"unknown selector operator {operator!r}")
    return True


def in_block(block: dict[str, Any], ip: str) -> bool:
    address = ipaddress.ip_address(ip)
    network = ipaddress.ip_network(block["cidr"])
    if address.version != network.version or address not in network:
        return False
    return not any(address in ipaddress.ip_network(cut) for cut in block.get("except") or []
                   if ipaddress.ip_network(cut).version == address.version)


def port_matches(item: dict[str, Any], target: Peer, port: int, protocol: str) -> bool:
    if item.get("protocol", "TCP") != protocol:
        return False
    wanted = item.get("port")
    if wanted is None:
        return True
    if isinstance(wanted, str):
        if not isinstance(target, Pod) or wanted not in target.ports:
            return False
        wanted = target.ports[wanted]
    end = item.get("endPort", wanted)
    return bool(wanted <= port <= end)
