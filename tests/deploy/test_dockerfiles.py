"""The two Dockerfiles, read rather than built (no container engine here): unprivileged user,
ports, commands, health checks, variables, and files that the build context really has.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from deploy_files import (
    DOCKER,
    K8S,
    NON_RUFLO_VARS,
    REPO,
    Instruction,
    containers,
    env_of,
    final_stage,
    load_tree,
    parse_dockerfile,
    settings_env_names,
)

SERVER = DOCKER / "server.Dockerfile"
SHELL = DOCKER / "shell.Dockerfile"


def stage(path: Path) -> list[Instruction]:
    return final_stage(parse_dockerfile(path))


def one(instructions: list[Instruction], keyword: str) -> Instruction:
    found = [item for item in instructions if item.keyword == keyword]
    assert len(found) == 1, f"expected one {keyword}, found {len(found)}"
    return found[0]


def pod_containers() -> dict[str, dict[str, object]]:
    deployment = load_tree(K8S).named("Deployment", "ruflo")
    assert deployment is not None
    return {c["name"]: c for c in containers(deployment)}


@pytest.mark.parametrize("path", [SERVER, SHELL], ids=lambda p: p.name)
def test_image_runs_as_uid_1000(path: Path) -> None:
    users = [item for item in stage(path) if item.keyword == "USER"]
    assert users, "no USER: the image would run as root"
    # Numeric, so that Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
    assert users[-1].text == "1000:1000"


@pytest.mark.parametrize("path", [SERVER, SHELL], ids=lambda p: p.name)
def test_env_vars_are_read_by_ruflo_or_listed(path: Path) -> None:
    names = set(env_of(stage(path)))
    assert names, "the image sets its data directory through ENV"
    assert names - settings_env_names() - set(NON_RUFLO_VARS) == set()


@pytest.mark.parametrize("path", [SERVER, SHELL], ids=lambda p: p.name)
def test_copied_files_exist_in_the_build_context(path: Path) -> None:
    """The build context is the repository root; every COPY source must be in it, and its
    .dockerignore must let it through."""
    ignore = (path.parent / f"{path.name}.dockerignore").read_text().splitlines()
    allowed = [line[1:].rstrip("/") for line in ignore if line.startswith("!")]
    for item in parse_dockerfile(path):
        if item.keyword != "COPY" or "--from=" in item.text:
            continue
        words = [w for w in shlex.split(item.text) if not w.startswith("--")]
        for source in words[:-1]:
            assert (REPO / source).exists(), f"{path.name}:{item.line}: {source} is missing"
            assert any(source == a or source.startswith(a + "/") for a in allowed), (
                f"{path.name}:{item.line}: {source} is excluded by the .dockerignore")


def test_server_image_serves_on_3000_with_its_data_in_the_volume() -> None:
    instructions = stage(SERVER)
    entrypoint = one(instructions, "ENTRYPOINT").exec_form()
    command = one(instructions, "CMD").exec_form()
    assert entrypoint == ["ruflo"]
    assert command == ["serve", "--host", "0.0.0.0", "--port", "3000"]
    assert one(instructions, "EXPOSE").text.split() == ["3000"]
    env = env_of(instructions)
    assert env["RUFLO_DATA_DIR"] == "/app/db"
    assert '"/app/db"' in one(instructions, "VOLUME").text
    # A non-loopback bind needs auth: forward auth behind the ingress.
    assert env["RUFLO_AUTH"] == "forward"
    # A default pod allows no user namespaces: the opt-out of the sandbox is explicit, not a
    # refusal of every command (docs/deploy.md says how to turn it on).
    assert env["RUFLO_SANDBOX"] == "off"
    server = pod_containers()["ruflo"]
    assert server["args"] == command
    assert {p["containerPort"] for p in server["ports"]} == {3000}  # type: ignore[attr-defined]


def test_server_healthcheck_asks_the_probe_path() -> None:
    check = one(stage(SERVER), "HEALTHCHECK")
    command = check.text[check.text.index("CMD") + 3:].strip()
    argv = Instruction("CMD", command, check.line).exec_form()
    assert argv is not None
    probe = pod_containers()["ruflo"]["readinessProbe"]
    path = probe["httpGet"]["path"]  # type: ignore[index]
    assert f"http://127.0.0.1:3000{path}" in " ".join(argv)


def test_shell_image_boots_through_boot_sh_into_sshd() -> None:
    instructions = stage(SHELL)
    entrypoint = one(instructions, "ENTRYPOINT").exec_form()
    command = one(instructions, "CMD").exec_form()
    assert entrypoint is not None
    assert command is not None
    assert entrypoint[:2] == ["/usr/bin/tini", "--"]
    boot = entrypoint[2]
    assert f"deploy/docker/shell/boot.sh {boot}" in copies(instructions)
    run_dir = entrypoint[entrypoint.index("--run-dir") + 1]
    assert entrypoint[-1] == "--"
    # sshd reads the config boot.sh writes into its run directory, and stays in the foreground.
    assert command[0] == "/usr/sbin/sshd"
    assert "-D" in command
    assert command[command.index("-f") + 1] == f"{run_dir}/sshd_config"
    assert one(instructions, "EXPOSE").text.split() == ["2222/tcp", "60016-60031/udp"]
    copied = copies(instructions)
    assert "deploy/docker/shell/sshd_config /usr/local/share/ruflo-shell/sshd_config" in copied
    assert "deploy/docker/shell/sshrc /etc/ssh/sshrc" in copied
    assert "deploy/docker/shell/profile.sh /etc/profile.d/ruflo-shell-summary.sh" in copied
    # The pod mounts an in-memory volume where boot writes the config (it holds the key).
    shell = pod_containers()["ruflo-shell"]
    assert run_dir in {m["mountPath"] for m in shell["volumeMounts"]}  # type: ignore[attr-defined]


def copies(instructions: list[Instruction]) -> str:
    lines = []
    for item in instructions:
        if item.keyword == "COPY":
            words = [w for w in shlex.split(item.text) if not w.startswith("--")]
            lines.append(" ".join(words))
    return "\n".join(lines)


def test_shell_image_removes_baked_host_keys_and_has_the_managers() -> None:
    runs = " ".join(item.text for item in stage(SHELL) if item.keyword == "RUN")
    assert "/etc/ssh/ssh_host_*" in runs
    for package in ("openssh-server", "mosh", "tini"):
        assert package in runs
    assert "mise" in runs
    assert "pipx" in runs


def test_shell_image_user_can_own_its_ptys() -> None:
    """sshd, running as agent, chowns each session's pty to (agent, tty) and ends the session
    when it cannot; tests/deploy/test_shell_sshd.py shows it with the real sshd."""
    runs = [item.text for item in stage(SHELL) if item.keyword == "RUN" and "useradd" in item.text]
    assert len(runs) == 1
    useradd = runs[0].split("useradd", 1)[1].split("&&", 1)[0].split()
    assert useradd[useradd.index("--groups") + 1].split(",").count("tty") == 1
    assert useradd[useradd.index("--uid") + 1] == "1000"


def test_shell_image_puts_mise_shims_first_on_path() -> None:
    path = env_of(stage(SHELL))["PATH"].split(":")
    assert path[0] == "/home/agent/.local/share/mise/shims"
    assert path.index("/usr/local/bin") < path.index("/usr/bin")


def test_shell_sshd_config_port_matches_the_pod() -> None:
    config = (DOCKER / "shell" / "sshd_config").read_text().splitlines()
    options = {line.split()[0]: line.split(None, 1)[1] for line in config
               if line.strip() and not line.startswith("#")}
    assert options["Port"] == "2222"
    assert options["UsePAM"] == "no"
    assert options["PasswordAuthentication"] == "no"
    assert options["PermitUserRC"] == "no", "a ~/.ssh/rc would replace the summary's sshrc"
    assert options["AllowUsers"] == "agent"
    keys = pod_containers()["ruflo-shell"]["volumeMounts"]
    key_dirs = {m["mountPath"] for m in keys}  # type: ignore[attr-defined]
    assert options["AuthorizedKeysFile"].split()[0].rsplit("/", 1)[0] in key_dirs


def test_dockerfile_parser_joins_continuations_and_skips_comments(tmp_path: Path) -> None:
    file = tmp_path / "Dockerfile"
    file.write_text('FROM a AS b\n# c\nENV A=1 \\\n    # inside\n    B="two words"\nUSER 5\n'
                    'FROM c\nCMD ["x", "y"]\n')
    instructions = parse_dockerfile(file)
    assert [i.keyword for i in instructions] == ["FROM", "ENV", "USER", "FROM", "CMD"]
    assert env_of(instructions) == {"A": "1", "B": "two words"}
    assert [i.keyword for i in final_stage(instructions)] == ["FROM", "CMD"]
    assert final_stage(instructions)[1].exec_form() == ["x", "y"]
