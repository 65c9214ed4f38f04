"""The Kubernetes manifests under deploy/: valid for a pinned Kubernetes version, cross-references
that resolve, the seed's hard-won requirements, and env vars that ruflo actually reads.

Core kinds are validated with kubernetes-validate's schemas (strict: unknown fields fail), custom
resources (ExternalSecret, Argo CD Application, Traefik, Cilium, KEDA) against their projects'
published CRDs (crd_schemas.py), and ExternalSecrets and Applications structurally too (the fields
their controllers need, the values ruflo relies on). test_rendered.py does the same on what
kustomize renders.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from crd_schemas import crd_kinds, crd_problems
from deploy_files import (
    DEPLOY,
    K8S,
    KUBERNETES_VERSION,
    KUSTOMIZE_KINDS,
    NON_RUFLO_VARS,
    POSTGRES_IMAGE_VARS,
    REPO,
    Tree,
    containers,
    env_names,
    kustomization_dirs,
    load_documents,
    load_tree,
    manifest_files,
    pod_spec,
    runs_ruflo,
    secret_keys,
    settings_env_names,
    workloads,
)
from rendering import render, renderable_dirs

CRD_KINDS = crd_kinds()
PROBE_PATH = "/api/v2/feature-flags"
MOSH_PORTS = set(range(60016, 60032))


def all_documents() -> list[tuple[Path, dict[str, Any]]]:
    return [(path, doc) for path in manifest_files() for doc in load_documents(path)]


def core_documents() -> list[tuple[Path, dict[str, Any]]]:
    return [(path, doc) for path, doc in all_documents()
            if doc.get("kind") not in KUSTOMIZE_KINDS | CRD_KINDS
            and "/patch-" not in path.as_posix()]


def doc_id(item: tuple[Path, dict[str, Any]]) -> str:
    path, doc = item
    return f"{path.relative_to(DEPLOY)}:{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


# -- schemas ---------------------------------------------------------------------------------

@pytest.mark.parametrize("item", core_documents(), ids=doc_id)
def test_manifest_is_valid_for_the_pinned_kubernetes_version(
        item: tuple[Path, dict[str, Any]]) -> None:
    import kubernetes_validate

    _, doc = item
    assert kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True) == KUBERNETES_VERSION


def test_patches_are_valid_once_applied() -> None:
    """A strategic-merge patch is not a whole object; validate the Deployment it produces."""
    import kubernetes_validate

    tree = load_tree(K8S / "overlays" / "workers")
    assert tree.patches, "the workers overlay patches the pod with DATABASE_URL"
    for _, patch in tree.patches:
        target = tree.named(patch["kind"], patch["metadata"]["name"])
        assert target is not None, f"the patch targets a missing {patch['kind']}"
        merged = merge_containers_by_name(target, patch)
        kubernetes_validate.validate(merged, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("item", [i for i in all_documents() if i[1].get("kind") in CRD_KINDS],
                         ids=doc_id)
def test_custom_resource_is_valid_for_its_published_crd(item: tuple[Path, dict[str, Any]]) -> None:
    _, doc = item
    assert crd_problems(doc) == []


def patched_objects(tree: Tree) -> list[dict[str, Any]]:
    """The tree's objects with its env patches applied."""
    objects = [doc for _, doc in tree.objects]
    for _, patch in tree.patches:
        for index, doc in enumerate(objects):
            if (doc.get("kind"), doc["metadata"]["name"]) == (patch["kind"],
                                                               patch["metadata"]["name"]):
                objects[index] = merge_containers_by_name(doc, patch)
    return objects


def merge_containers_by_name(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """Just enough of a strategic merge for env patches: containers matched by name, env lists
    merged by name. Raises when a patched container is not in the target."""
    merged = copy.deepcopy(target)
    by_name = {c["name"]: c for c in pod_spec(merged)["containers"]}
    for container in pod_spec(patch)["containers"]:
        assert container["name"] in by_name, f"the patch names no container {container['name']}"
        env = by_name[container["name"]].setdefault("env", [])
        names = {item["name"] for item in env}
        env.extend(item for item in container.get("env", []) if item["name"] not in names)
    return merged


@pytest.mark.parametrize("item", [i for i in all_documents() if i[1].get("kind") == "ExternalSecret"],
                         ids=doc_id)
def test_external_secret_is_well_formed(item: tuple[Path, dict[str, Any]]) -> None:
    _, doc = item
    assert doc["apiVersion"] in {"external-secrets.io/v1", "external-secrets.io/v1beta1"}
    spec = doc["spec"]
    assert spec["secretStoreRef"]["kind"] in {"SecretStore", "ClusterSecretStore"}
    assert spec["secretStoreRef"]["name"]
    assert spec["target"]["name"] == doc["metadata"]["name"]
    assert spec["data"], "an ExternalSecret with no data makes an empty Secret"
    for item_ in spec["data"]:
        assert set(item_) == {"secretKey", "remoteRef"}
        assert item_["remoteRef"]["key"]
    template = spec["target"].get("template", {}).get("data", {})
    known = {item_["secretKey"] for item_ in spec["data"]}
    for key, text in template.items():
        for used in _template_fields(text):
            assert used in known, f"template key {key} uses .{used}, which no data item sets"


def _template_fields(text: str) -> set[str]:
    import re

    return set(re.findall(r"\{\{\s*\.([A-Za-z0-9_]+)\s*\}\}", text))


def argo_applications() -> dict[str, dict[str, Any]]:
    apps = {}
    for path in manifest_files(DEPLOY / "argocd"):
        for doc in load_documents(path):
            if doc.get("kind") == "Application":
                apps[doc["metadata"]["name"]] = doc
    return apps


def test_argo_cd_applications_sync_in_two_waves() -> None:
    apps = argo_applications()
    assert set(apps) == {"ruflo-db", "ruflo"}
    waves = {name: app["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"]
             for name, app in apps.items()}
    assert waves == {"ruflo-db": "0", "ruflo": "1"}
    for name, app in apps.items():
        assert app["apiVersion"] == "argoproj.io/v1alpha1"
        spec = app["spec"]
        assert spec["project"]
        assert spec["destination"]["namespace"] == "ruflo-system"
        assert spec["destination"].get("server") or spec["destination"].get("name")
        options = spec["syncPolicy"]["syncOptions"]
        assert "ServerSideApply=true" in options, name
        assert spec["syncPolicy"].get("automated", {}).get("prune") is False, name
        source = spec["source"]
        assert source["repoURL"]
        assert source["targetRevision"]
        path = REPO / source["path"]
        assert (path / "kustomization.yaml").is_file(), source["path"]


# -- kustomizations --------------------------------------------------------------------------

@pytest.mark.parametrize("directory", kustomization_dirs(), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_kustomization_lists_files_that_exist(directory: Path) -> None:
    tree = load_tree(directory)
    assert tree.missing == []
    assert tree.objects, f"{directory} makes nothing"


def test_every_manifest_file_belongs_to_a_kustomization() -> None:
    """A file no kustomization lists is never applied: a silent gap in the deployment."""
    listed = set(path for d in kustomization_dirs() for path, _ in load_tree(d).objects)
    listed |= set(path for d in kustomization_dirs() for path, _ in load_tree(d).patches)
    listed |= set(path for d in kustomization_dirs() for path in load_tree(d).kustomizations)
    orphans = [str(p.relative_to(DEPLOY)) for p in manifest_files() if p.resolve() not in listed]
    assert orphans == []


def test_load_tree_reports_a_missing_resource(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        "resources: [present.yaml, absent.yaml]\n")
    (tmp_path / "present.yaml").write_text("apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n")
    tree = load_tree(tmp_path)
    assert len(tree.missing) == 1
    assert "absent.yaml" in tree.missing[0]


# -- cross-references ------------------------------------------------------------------------

def reference_problems(tree: Tree) -> list[str]:
    """Everything that points at nothing: mounts, claims, ConfigMaps, Secrets, probe and service
    ports, service selectors, service accounts."""
    objects = patched_objects(tree)
    problems: list[str] = []
    names = {(doc["kind"], doc["metadata"]["name"]) for doc in objects}
    claim_templates: set[str] = set()
    for workload in workloads(objects):
        spec = pod_spec(workload)
        where = f"{workload['kind']}/{workload['metadata']['name']}"
        for template in workload["spec"].get("volumeClaimTemplates") or []:
            claim_templates.add(template["metadata"]["name"])
        volumes = {volume["name"]: volume for volume in spec.get("volumes") or []}
        for name, volume in volumes.items():
            if "persistentVolumeClaim" in volume:
                claim = volume["persistentVolumeClaim"]["claimName"]
                if ("PersistentVolumeClaim", claim) not in names:
                    problems.append(f"{where}: volume {name} claims missing PVC {claim}")
            if "configMap" in volume and not volume["configMap"].get("optional") \
                    and ("ConfigMap", volume["configMap"]["name"]) not in names:
                problems.append(f"{where}: volume {name} needs missing ConfigMap")
            if "secret" in volume and not volume["secret"].get("optional") \
                    and secret_keys(objects, volume["secret"]["secretName"]) is None:
                problems.append(f"{where}: volume {name} needs a Secret nothing makes")
        account = spec.get("serviceAccountName")
        if account and ("ServiceAccount", account) not in names:
            problems.append(f"{where}: service account {account} does not exist")
        for container in containers(workload):
            cname = f"{where} container {container['name']}"
            for mount in container.get("volumeMounts") or []:
                if mount["name"] not in volumes and mount["name"] not in claim_templates:
                    problems.append(f"{cname}: mount {mount['name']} names no volume")
            ports = {p.get("name"): p["containerPort"] for p in container.get("ports") or []}
            for probe_name in ("readinessProbe", "livenessProbe", "startupProbe"):
                probe = container.get(probe_name) or {}
                for handler in ("httpGet", "tcpSocket", "grpc"):
                    if handler in probe:
                        port = probe[handler]["port"]
                        if port not in ports and port not in ports.values():
                            problems.append(f"{cname}: {probe_name} port {port} is not a "
                                            "container port")
            for source in container.get("envFrom") or []:
                ref = source.get("configMapRef") or source.get("secretRef") or {}
                if ref.get("optional"):
                    continue
                if "configMapRef" in source and ("ConfigMap", ref["name"]) not in names:
                    problems.append(f"{cname}: envFrom missing ConfigMap {ref['name']}")
                if "secretRef" in source and secret_keys(objects, ref["name"]) is None:
                    problems.append(f"{cname}: envFrom Secret {ref['name']} nothing makes")
            for item in container.get("env") or []:
                ref = (item.get("valueFrom") or {}).get("secretKeyRef")
                if ref and not ref.get("optional") and secret_keys(objects, ref["name"]) is None \
                        and not external_secret(tree, ref["name"]):
                    problems.append(f"{cname}: env {item['name']} needs Secret {ref['name']}, "
                                    "which nothing makes and no comment tells to create")
    for service in (doc for doc in objects if doc["kind"] == "Service"):
        selector = service["spec"].get("selector") or {}
        matched = [w for w in workloads(objects) if selector and all(
            w["spec"]["template"]["metadata"]["labels"].get(k) == v for k, v in selector.items())]
        if not matched:
            problems.append(f"Service/{service['metadata']['name']}: selector matches no pod")
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            offered = {(p.get("name"), p["containerPort"], p.get("protocol", "TCP"))
                       for w in matched for c in containers(w) for p in c.get("ports") or []}
            if not any((target in (name, number)) and proto == port.get("protocol", "TCP")
                       for name, number, proto in offered):
                problems.append(f"Service/{service['metadata']['name']}: port "
                                f"{port.get('name')} targets {target}/{port.get('protocol', 'TCP')}, "
                                "which no selected container offers")
    return problems


def external_secret(tree: Tree, name: str) -> bool:
    """Secrets the person applying creates by hand: the kustomization says how in a comment."""
    return any(f"create secret generic {name}" in path.read_text() for path in tree.kustomizations)


@pytest.mark.parametrize("directory", kustomization_dirs(), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_cross_references_resolve(directory: Path) -> None:
    assert reference_problems(load_tree(directory)) == []


def test_cross_reference_check_catches_broken_manifests() -> None:
    tree = load_tree(K8S)
    deployment = tree.named("Deployment", "ruflo")
    assert deployment is not None
    broken = copy.deepcopy(deployment)
    server, shell = pod_spec(broken)["containers"]
    server["volumeMounts"][0]["name"] = "no-such-volume"
    server["readinessProbe"]["httpGet"]["port"] = 3999
    pod_spec(broken)["volumes"][0]["persistentVolumeClaim"]["claimName"] = "no-such-claim"
    shell["envFrom"][0]["configMapRef"]["name"] = "no-such-settings"
    broken["spec"]["template"]["metadata"]["labels"] = {"app.kubernetes.io/name": "other"}
    objects = [(path, broken if doc is deployment else doc) for path, doc in tree.objects]
    problems = reference_problems(Tree(root=tree.root, objects=objects,
                                       kustomizations=tree.kustomizations))
    text = "\n".join(problems)
    for expected in ("mount no-such-volume names no volume", "port 3999 is not a container port",
                     "missing PVC no-such-claim", "missing ConfigMap no-such-settings",
                     "Service/ruflo: selector matches no pod",
                     "Service/ruflo-shell: selector matches no pod"):
        assert expected in text


# -- what ruflo reads ------------------------------------------------------------------------

@pytest.mark.parametrize("directory", kustomization_dirs(), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_every_env_var_is_one_ruflo_reads_or_a_listed_exception(directory: Path) -> None:
    tree = load_tree(directory)
    objects = patched_objects(tree)
    read = settings_env_names()
    unknown = []
    for workload in workloads(objects):
        for container in containers(workload):
            allowed = read | set(NON_RUFLO_VARS)
            if not runs_ruflo(container):
                allowed = set(POSTGRES_IMAGE_VARS) if "postgres" in container["image"] else set()
            for name, source in env_names(container, objects).items():
                if name not in allowed:
                    unknown.append(f"{workload['metadata']['name']}/{container['name']}: "
                                   f"{name} ({source})")
    assert unknown == []


def test_settings_config_map_holds_valid_settings() -> None:
    """The ConfigMap's values load as ruflo settings (a typo'd value would stop the server)."""
    from ruflo.config import load_settings

    config_map = load_tree(K8S).named("ConfigMap", "ruflo-settings")
    assert config_map is not None
    settings = load_settings(dict(config_map["data"], RUFLO_DATA_DIR="/app/db"))
    assert settings.auth == "forward"
    assert settings.trusted_proxies
    assert settings.gateway_url_var == "LITELLM_BASE_URL"
    assert settings.findings == []


def test_no_direct_provider_key_anywhere() -> None:
    """Zero frontier keys: every LLM call goes through the gateway and its revocable key."""
    from ruflo.config import PROVIDER_KEY_VARS

    text = "\n".join(path.read_text() for path in manifest_files())
    text += "\n".join(path.read_text() for path in (DEPLOY / "docker").rglob("*") if path.is_file())
    assert [var for var in PROVIDER_KEY_VARS if var in text] == []


def test_gateway_secret_carries_the_virtual_key_and_url() -> None:
    objects = [doc for _, doc in load_tree(K8S).objects]
    assert secret_keys(objects, "ruflo-gateway") == {"OPENAI_API_KEY", "OPENAI_BASE_URL"}
    alerts = secret_keys(objects, "ruflo-alerts") or set()
    assert {"RUFLO_TELEGRAM_BOT_TOKEN", "RUFLO_TELEGRAM_CHAT_ID", "RESEND_API_KEY"} <= alerts


# -- the seed's requirements -----------------------------------------------------------------

def ruflo_pod() -> tuple[dict[str, Any], dict[str, dict[str, Any]], Tree]:
    tree = load_tree(K8S)
    deployment = tree.named("Deployment", "ruflo")
    assert deployment is not None
    return deployment, {c["name"]: c for c in containers(deployment)}, tree


def test_pod_shape_follows_the_seed() -> None:
    deployment, by_name, tree = ruflo_pod()
    spec = pod_spec(deployment)
    assert set(by_name) == {"ruflo", "ruflo-shell"}
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    assert deployment["spec"]["replicas"] == 1
    assert "ruflo-system" in {doc["metadata"]["name"] for doc in tree.of_kind("Namespace")}
    for claim, size in {"ruflo-data": "5Gi", "ruflo-workspace": "20Gi",
                        "ruflo-shell-home": "10Gi"}.items():
        pvc = tree.named("PersistentVolumeClaim", claim)
        assert pvc is not None
        assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
        assert pvc["spec"]["resources"]["requests"]["storage"] == size
    assert spec["securityContext"]["runAsNonRoot"] is True


def test_no_share_process_namespace_anywhere() -> None:
    for path, doc in all_documents():
        assert "shareProcessNamespace" not in yaml.safe_dump(doc), path


def test_server_probes_ask_the_feature_flags_path() -> None:
    _, by_name, _ = ruflo_pod()
    server = by_name["ruflo"]
    ready, live = server["readinessProbe"], server["livenessProbe"]
    assert ready["httpGet"]["path"] == live["httpGet"]["path"] == PROBE_PATH
    assert ready["periodSeconds"] == 10
    assert (live["initialDelaySeconds"], live["periodSeconds"]) == (30, 30)
    ports = {p["name"]: p["containerPort"] for p in server["ports"]}
    assert ports[ready["httpGet"]["port"]] == 3000


def test_shell_probes_are_tcp_on_ssh_and_allow_the_boot_reconcile() -> None:
    _, by_name, _ = ruflo_pod()
    shell = by_name["ruflo-shell"]
    ports = {p["name"]: p["containerPort"] for p in shell["ports"]}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert ports[shell[probe]["tcpSocket"]["port"]] == 2222
    startup = shell["startupProbe"]
    # The boot reconcile may take up to its timeout before sshd listens.
    assert startup["periodSeconds"] * startup["failureThreshold"] > boot_timeout()
    udp = {p["containerPort"] for p in shell["ports"] if p["protocol"] == "UDP"}
    assert udp == MOSH_PORTS


def boot_timeout() -> int:
    from deploy_files import DOCKER, final_stage, parse_dockerfile

    entrypoint = next(i for i in final_stage(parse_dockerfile(DOCKER / "shell.Dockerfile"))
                      if i.keyword == "ENTRYPOINT").exec_form()
    assert entrypoint is not None
    return int(entrypoint[entrypoint.index("--reconcile-timeout") + 1])


def test_volumes_sit_where_ruflo_looks() -> None:
    """The data directory is on the persistent volume (the seed lost everything without it)."""
    deployment, by_name, _ = ruflo_pod()
    claims = {v["name"]: v["persistentVolumeClaim"]["claimName"]
              for v in pod_spec(deployment)["volumes"] if "persistentVolumeClaim" in v}
    for container in by_name.values():
        env = {item["name"]: item.get("value") for item in container["env"]}
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        assert env["RUFLO_DATA_DIR"] == "/app/db"
        assert claims[mounts["/app/db"]["name"]] == "ruflo-data"
        assert claims[mounts[env["RUFLO_WORKSPACE"]]["name"]] == "ruflo-workspace"
    shell = by_name["ruflo-shell"]
    mounts = {m["mountPath"]: m for m in shell["volumeMounts"]}
    assert claims[mounts["/home/agent"]["name"]] == "ruflo-shell-home"
    inventory = mounts["/etc/ruflo-shell"]
    assert inventory["readOnly"] is True
    env = {item["name"]: item.get("value") for item in shell["env"]}
    assert env["RUFLO_SHELL_INVENTORY"].startswith("/etc/ruflo-shell/")
    volumes = {v["name"]: v for v in pod_spec(deployment)["volumes"]}
    keys = volumes[mounts["/etc/ruflo-shell-keys"]["name"]]["secret"]
    assert keys["optional"] is True


def test_every_container_is_unprivileged_with_resources() -> None:
    for directory in kustomization_dirs():
        tree = load_tree(directory)
        for workload in workloads([doc for _, doc in tree.objects]):
            pod_context = pod_spec(workload).get("securityContext", {})
            assert pod_context.get("runAsNonRoot") is True
            for container in containers(workload):
                context = container["securityContext"]
                assert context["allowPrivilegeEscalation"] is False
                assert context["capabilities"]["drop"] == ["ALL"]
                assert context.get("runAsUser", pod_context.get("runAsUser", 0)) != 0
                assert container["resources"]["requests"]
                assert container["resources"]["limits"]


def test_inventory_config_map_is_what_the_reconciler_reads(tmp_path: Path) -> None:
    from ruflo.shell.inventory import load_inventory

    config_map = load_tree(K8S).named("ConfigMap", "ruflo-shell-inventory")
    assert config_map is not None
    file = tmp_path / "inventory.yaml"
    file.write_text(config_map["data"]["inventory.yaml"])
    inventory = load_inventory(file)
    assert "node@20" in repr(inventory)
    assert "claude-flow@alpha" in repr(inventory)


def test_the_inventory_declares_every_preset_agent_cli_pinned(tmp_path: Path) -> None:
    """The shell image carries the agent CLIs the presets drive, at the presets' versions: an
    npm CLI under npm-global (`name@version`), a Python one under pipx (`name==version`)."""
    from ruflo.agents.presets import known_presets
    from ruflo.shell.inventory import load_inventory

    config_map = load_tree(K8S).named("ConfigMap", "ruflo-shell-inventory")
    assert config_map is not None
    file = tmp_path / "inventory.yaml"
    file.write_text(config_map["data"]["inventory.yaml"])
    inventory = load_inventory(file)
    declared = {(spec.manager, spec.name): spec.version
                for manager in ("npm-global", "pipx") for spec in inventory.entries(manager)[0]}
    presets = known_presets()
    assert {p.name for p in presets} == {"claude-code", "codex", "gemini-cli", "opencode",
                                         "aider"}
    for preset in presets:
        registry, _, spec = preset.package.partition(":")
        if registry == "npm":
            name, _, version = spec.rpartition("@")
            assert declared.get(("npm-global", name)) == version, preset.name
        else:
            assert registry == "pypi", preset.package
            name, _, version = spec.partition("==")
            assert declared.get(("pipx", name)) == f"=={version}", preset.name


def test_services_expose_web_and_shell_as_in_the_seed() -> None:
    tree = load_tree(K8S)
    web, shell = tree.named("Service", "ruflo"), tree.named("Service", "ruflo-shell")
    assert web is not None
    assert shell is not None
    assert web["spec"]["type"] == "ClusterIP"
    assert [(p["port"], p["targetPort"]) for p in web["spec"]["ports"]] == [(80, "http")]
    assert shell["spec"]["type"] == "LoadBalancer"
    tcp = [p for p in shell["spec"]["ports"] if p["protocol"] == "TCP"]
    assert [(p["port"], p["targetPort"]) for p in tcp] == [(22, "ssh")]
    assert {p["port"] for p in shell["spec"]["ports"] if p["protocol"] == "UDP"} == MOSH_PORTS


def test_workers_overlay_runs_ruflo_worker_on_postgres() -> None:
    tree = load_tree(K8S / "overlays" / "postgres-workers")
    worker = tree.named("Deployment", "ruflo-worker")
    assert worker is not None
    (container,) = containers(worker)
    assert runs_ruflo(container)
    args = container["args"]
    assert args[0] == "worker"
    assert "--all-hives" in args
    assert int(args[args.index("--agents") + 1]) > 0
    env = {item["name"]: item for item in container["env"]}
    assert env["DATABASE_URL"]["value"].startswith("postgresql://")
    assert "@ruflo-db-postgresql:5432/" in env["DATABASE_URL"]["value"]
    assert tree.named("Service", "ruflo-db-postgresql") is not None
    assert tree.named("StatefulSet", "ruflo-db-postgresql") is not None
    patched = {c["name"] for _, patch in tree.patches for c in pod_spec(patch)["containers"]
               if any(e["name"] == "DATABASE_URL" for e in c["env"])}
    assert patched == {"ruflo", "ruflo-shell"}


# -- the probe path is a route the server serves, without auth, under the pod's settings -----

async def test_probe_path_answers_under_the_deployment_settings(tmp_path: Path) -> None:
    import httpx

    from ruflo.config import load_settings
    from ruflo.server.app import create_app
    from ruflo.store import open_store

    _, by_name, tree = ruflo_pod()
    config_map = tree.named("ConfigMap", "ruflo-settings")
    assert config_map is not None
    env = dict(config_map["data"])
    env.update({item["name"]: str(tmp_path) if item["name"] == "RUFLO_DATA_DIR" else item["value"]
                for item in by_name["ruflo"]["env"] if "value" in item})
    settings = load_settings(env)
    store = open_store(settings)
    try:
        app = create_app(settings, store, None)
        assert PROBE_PATH in app.openapi()["paths"], "the probe path is not a route of the app"
        # The kubelet probes from the node's address, which is not a trusted proxy.
        transport = httpx.ASGITransport(app=app, client=("192.0.2.10", 40000))
        public = f"http://{env['RUFLO_ALLOWED_HOSTS'].split(',')[0]}"
        async with httpx.AsyncClient(transport=transport, base_url="http://pod") as client:
            answer = await client.get(PROBE_PATH)
            stray = await client.get("/api/v2/conversations")
            page = await client.get(f"{public}/api/v2/conversations")
        assert answer.status_code == 200, answer.text
        assert stray.status_code == 421, "a request for a host that is not ours is refused"
        assert page.status_code == 401, "a request from outside the proxy names no user"
    finally:
        store.close()


# -- the same, on what kustomize actually renders (validation: test_rendered.py) -------------

@pytest.mark.parametrize("directory", renderable_dirs(), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_rendered_output_is_namespaced_and_its_references_resolve(directory: Path) -> None:
    documents = render(directory)
    for doc in documents:
        if doc["kind"] not in {"Namespace", "Application"}:
            assert doc["metadata"].get("namespace") == "ruflo-system", doc["metadata"]["name"]
    tree = Tree(root=directory, objects=[(directory, doc) for doc in documents],
                kustomizations=load_tree(directory).kustomizations)
    assert reference_problems(tree) == []
