"""What each container of the rendered pod is given, and how the ingress components line up with
the server's forward-auth settings:

- the shell container's environment holds no gateway key, from any source (env, a ConfigMap or
  Secret through envFrom, a secretKeyRef, a mounted Secret), and names the server container's
  relay on the pod's loopback as its gateway; the server container and the workers hold the key;
- the Traefik IngressRoute and the standard Ingress serve the host in RUFLO_ALLOWED_HOSTS, copy
  the header RUFLO_AUTH=forward reads from the Authentik outpost's answer, and reach the port the
  NetworkPolicy opens to their namespace; a request through them gets its user, one from
  anywhere else gets 401.
"""

from __future__ import annotations

import copy
import ipaddress
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from deploy_files import K8S, env_names, pod_spec, secret_keys
from netpol import Cluster, Pod
from rendering import named, render, render_with, template_labels

GATEWAY_KEY = "OPENAI_API_KEY"
GATEWAY_URLS = ("OPENAI_BASE_URL", "LITELLM_BASE_URL")


def container(documents: list[dict[str, Any]], workload: str, name: str) -> dict[str, Any]:
    spec = pod_spec(named(documents, "Deployment", workload))
    found: dict[str, Any] = next(c for c in spec["containers"] if c["name"] == name)
    return found


def key_sources(documents: list[dict[str, Any]], workload: str, name: str) -> list[str]:
    """Every way the gateway key reaches the container: variables and mounted Secrets."""
    box = container(documents, workload, name)
    found = [f"{var} from {source}" for var, source in env_names(box, documents).items()
             if var == GATEWAY_KEY]
    volumes = {v["name"]: v for v in pod_spec(named(documents, "Deployment", workload))["volumes"]}
    for mount in box.get("volumeMounts") or []:
        secret = volumes[mount["name"]].get("secret")
        if secret and GATEWAY_KEY in (secret_keys(documents, secret["secretName"]) or set()):
            found.append(f"volume {mount['name']} mounts Secret {secret['secretName']}")
    return found


def test_the_shell_container_holds_no_gateway_key(rendered: list[dict[str, Any]]) -> None:
    assert key_sources(rendered, "ruflo", "ruflo-shell") == []
    assert key_sources(render(K8S), "ruflo", "ruflo-shell") == []
    # Those that run hives do: the web server and the workers.
    assert key_sources(rendered, "ruflo", "ruflo") == [f"{GATEWAY_KEY} from Secret ruflo-gateway"]
    assert key_sources(rendered, "ruflo-worker", "worker") == [
        f"{GATEWAY_KEY} from Secret ruflo-gateway"]


def test_the_check_finds_the_key_however_it_comes(rendered: list[dict[str, Any]]) -> None:
    """Hostile: the key handed to the shell through envFrom, a secretKeyRef or a mount."""
    documents = copy.deepcopy(rendered)
    shell = container(documents, "ruflo", "ruflo-shell")
    shell["envFrom"].append({"secretRef": {"name": "ruflo-gateway", "optional": True}})
    assert key_sources(documents, "ruflo", "ruflo-shell") == [
        f"{GATEWAY_KEY} from Secret ruflo-gateway"]
    documents = copy.deepcopy(rendered)
    shell = container(documents, "ruflo", "ruflo-shell")
    shell["env"].append({"name": GATEWAY_KEY, "valueFrom": {"secretKeyRef": {
        "name": "ruflo-gateway", "key": GATEWAY_KEY}}})
    assert key_sources(documents, "ruflo", "ruflo-shell") == [f"{GATEWAY_KEY} from env"]
    documents = copy.deepcopy(rendered)
    pod_spec(named(documents, "Deployment", "ruflo"))["volumes"].append(
        {"name": "gw", "secret": {"secretName": "ruflo-gateway"}})
    container(documents, "ruflo", "ruflo-shell")["volumeMounts"].append(
        {"name": "gw", "mountPath": "/etc/gw"})
    assert key_sources(documents, "ruflo", "ruflo-shell") == [
        "volume gw mounts Secret ruflo-gateway"]


def test_the_shell_names_the_relay_on_the_pods_loopback(rendered: list[dict[str, Any]]) -> None:
    """Both gateway variables point inside the pod (the server container's relay), overriding
    the ConfigMap's gateway address; nothing outside the pod can connect to loopback."""
    shell = container(rendered, "ruflo", "ruflo-shell")
    env = {item["name"]: item.get("value") for item in shell["env"]}
    for var in GATEWAY_URLS:
        host = urlsplit(env[var]).hostname
        assert host is not None
        assert ipaddress.ip_address(host).is_loopback, var
    # `env` wins over `envFrom`: the ConfigMap's gateway address never reaches the shell.
    settings = named(rendered, "ConfigMap", "ruflo-settings")["data"]
    assert env["LITELLM_BASE_URL"] != settings["LITELLM_BASE_URL"]
    assert "shareProcessNamespace" not in pod_spec(named(rendered, "Deployment", "ruflo")), \
        "a shared process namespace would show the server's environment in /proc"


# -- ingress with forward auth -----------------------------------------------------------------

def route_host(match: str) -> str:
    prefix = "Host(`"
    assert match.startswith(prefix), match
    return match[len(prefix):match.index("`", len(prefix))]


def forward_settings(documents: list[dict[str, Any]]) -> dict[str, str]:
    data: dict[str, str] = named(documents, "ConfigMap", "ruflo-settings")["data"]
    return data


def traefik_problems(documents: list[dict[str, Any]]) -> list[str]:
    """How the Traefik route and its Middlewares fail to line up with the server's settings."""
    from ruflo.server.auth import FORWARD_HEADERS

    found: list[str] = []
    settings = forward_settings(documents)
    if settings["RUFLO_AUTH"] != "forward":
        found.append("RUFLO_AUTH is not forward")
    (rule,) = named(documents, "IngressRoute", "ruflo")["spec"]["routes"]
    if route_host(rule["match"]) not in settings["RUFLO_ALLOWED_HOSTS"].split(","):
        found.append("the route's host is not in RUFLO_ALLOWED_HOSTS")
    if [m["name"] for m in rule.get("middlewares") or []] != [
            "ruflo-strip-user-headers", "authentik-forwardauth"]:
        found.append("client-sent user headers are not removed before the outpost's are set")
    stripped = named(documents, "Middleware", "ruflo-strip-user-headers")["spec"]["headers"]
    if {name.lower() for name, value in stripped["customRequestHeaders"].items()
            if value == ""} != set(FORWARD_HEADERS):
        found.append("not every user header ruflo reads is stripped")
    auth = named(documents, "Middleware", "authentik-forwardauth")["spec"]["forwardAuth"]
    if FORWARD_HEADERS[0] not in {h.lower() for h in auth.get("authResponseHeaders") or []}:
        found.append(f"the outpost's {FORWARD_HEADERS[0]} is not copied into the request")
    if "/outpost.goauthentik.io/auth/traefik" not in auth["address"]:
        found.append("forwardAuth does not ask the Authentik outpost")
    return found


def test_traefik_route_lines_up_with_the_servers_settings(tmp_path: Path) -> None:
    documents = render_with(tmp_path, K8S / "overlays" / "workers", ["traefik-forward-auth"])
    assert traefik_problems(documents) == []
    (rule,) = named(documents, "IngressRoute", "ruflo")["spec"]["routes"]
    (service,) = rule["services"]
    assert_reaches_the_web_port(documents, service["name"], service["port"], "traefik")

    # Hostile edits, each caught.
    broken = copy.deepcopy(documents)
    (rule,) = named(broken, "IngressRoute", "ruflo")["spec"]["routes"]
    rule["middlewares"].reverse()
    rule["match"] = "Host(`ruflo.other.example`)"
    auth = named(broken, "Middleware", "authentik-forwardauth")["spec"]["forwardAuth"]
    auth["authResponseHeaders"].remove("X-authentik-username")
    del named(broken, "Middleware", "ruflo-strip-user-headers")["spec"]["headers"][
        "customRequestHeaders"]["Remote-User"]
    assert traefik_problems(broken) == [
        "the route's host is not in RUFLO_ALLOWED_HOSTS",
        "client-sent user headers are not removed before the outpost's are set",
        "not every user header ruflo reads is stripped",
        "the outpost's x-authentik-username is not copied into the request"]


def test_standard_ingress_lines_up_with_the_servers_settings(tmp_path: Path) -> None:
    from ruflo.server.auth import FORWARD_HEADERS

    documents = render_with(tmp_path, K8S / "overlays" / "workers", ["ingress"])
    settings = forward_settings(documents)
    ingress = named(documents, "Ingress", "ruflo")
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] in settings["RUFLO_ALLOWED_HOSTS"].split(",")
    notes = ingress["metadata"]["annotations"]
    copied = {h.strip().lower() for h in notes["nginx.ingress.kubernetes.io/auth-response-headers"]
              .split(",")}
    assert FORWARD_HEADERS[0] in copied
    assert "/outpost.goauthentik.io/auth/nginx" in notes["nginx.ingress.kubernetes.io/auth-url"]
    backend = rule["http"]["paths"][0]["backend"]["service"]
    port = backend["port"].get("name", backend["port"].get("number"))
    # ingress-nginx lives in its own namespace: the NetworkPolicy must name it (docs/deploy.md).
    web = named(documents, "NetworkPolicy", "ruflo-web-ingress")
    web["spec"]["ingress"][0]["from"][0]["namespaceSelector"]["matchLabels"][
        "kubernetes.io/metadata.name"] = "ingress-nginx"
    assert_reaches_the_web_port(documents, backend["name"], port, "ingress-nginx")


def assert_reaches_the_web_port(documents: list[dict[str, Any]], service_name: str,
                                service_port: str | int, controller_namespace: str) -> None:
    """The Service port the route names leads to the server's port 3000, and the rendered
    policies let the controller's namespace (and no other) connect to it."""
    service = named(documents, "Service", service_name)
    (port,) = [p for p in service["spec"]["ports"] if service_port in (p["name"], p["port"])]
    server = container(documents, "ruflo", "ruflo")
    ports = {p["name"]: p["containerPort"] for p in server["ports"]}
    target = ports.get(port["targetPort"], port["targetPort"])
    assert target == 3000
    ruflo = Pod("ruflo", "ruflo-system", template_labels(documents, "Deployment", "ruflo"),
                "10.42.0.10", ports)
    controller = Pod("controller", controller_namespace, {}, "10.42.2.7")
    stranger = Pod("stranger", "default", {}, "10.42.3.3")
    world = Cluster({}, [ruflo, controller, stranger],
                    [d for d in documents if d["kind"] == "NetworkPolicy"])
    assert world.can_connect(controller, ruflo, target)
    assert not world.can_connect(stranger, ruflo, target)


async def test_a_request_through_the_proxy_has_its_user_and_no_other_does(
        tmp_path: Path) -> None:
    """The server under the rendered settings: a request from an address in
    RUFLO_TRUSTED_PROXIES (where the controller's pods are) with the outpost's header is that
    user; the same header from outside the proxies' range is refused, and so is the header from
    the pod's own address (the shell container, which shares the pod's network)."""
    import httpx

    from ruflo.config import load_settings
    from ruflo.server.app import create_app
    from ruflo.store import open_store

    documents = render(K8S)
    settings_env = dict(forward_settings(documents), RUFLO_DATA_DIR=str(tmp_path))
    settings = load_settings(settings_env)
    network = ipaddress.ip_network(settings.trusted_proxies[0])
    proxy_address = str(next(network.hosts()))
    host = settings_env["RUFLO_ALLOWED_HOSTS"].split(",")[0]
    store = open_store(settings)
    try:
        app = create_app(settings, store, None)
        answers = {}
        for client in (proxy_address, "192.0.2.10"):
            transport = httpx.ASGITransport(app=app, client=(client, 40000))
            async with httpx.AsyncClient(transport=transport, base_url=f"https://{host}") as web:
                answers[client] = await web.get("/api/v2/hives",
                                                headers={"X-authentik-username": "alice"})
        assert answers[proxy_address].status_code == 200, answers[proxy_address].text
        assert answers["192.0.2.10"].status_code == 401
        # The shell container shares the pod's network: it reaches the pod's own address, which
        # is inside the trusted range, from that same address. Its headers are refused.
        pod_ip = str(list(network.hosts())[9])
        transport = httpx.ASGITransport(app=app, client=(pod_ip, 40000))
        async with httpx.AsyncClient(transport=transport,
                                     base_url=f"http://{pod_ip}:3000") as shell:
            own = await shell.get("/api/v2/hives", headers={"Host": host,
                                                            "X-authentik-username": "alice"})
        assert own.status_code == 401, own.text
        assert "own address are not trusted" in own.json()["message"]
    finally:
        store.close()
