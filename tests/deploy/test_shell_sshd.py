"""The shell image's ssh setup against the real OpenSSH server and client: boot.sh runs a stand-in
reconcile, then execs /usr/sbin/sshd unprivileged, and real `ssh` sessions check that the container
environment reaches every session (SetEnv) and that every kind of session shows the summary line.

How close to the image this gets: sshd runs as the throwaway system user `rufloagent` (the image's
`agent`; created here when missing, in group tty as the image's user is), with the image's ENV,
ENTRYPOINT arguments, CMD and sshd_config, and the repository's sshrc, summary script and profile
script at the image's paths. Those paths are bind mounts in a private mount namespace, so the
machine's own /etc/ssh, /usr/local/bin, /etc/profile.d, /home and /run are left alone. What
differs: the user's name and UID, `-p <free port> -o ListenAddress=127.0.0.1` appended to the
CMD, no tini, no mosh, and the pod's volumes are plain directories. Needs root (to make the user
and the namespace); with CI=true a missing piece fails the test instead of skipping it.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from deploy_files import (
    DOCKER,
    SHELL_FILES,
    Instruction,
    env_of,
    final_stage,
    parse_dockerfile,
)

from server_thread import free_port
from waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

USER = "rufloagent"
IMAGE_USER_HOME = "/home/agent"
SSHD = "/usr/sbin/sshd"
OK_SUMMARY = "✓ ruflo-shell: 7 installed, 0 already present, 0 removed @ 2026-05-03T14:22:11Z"

STANDIN_RUFLO = f"""#!/bin/sh
# stand-in for `ruflo shell reconcile`, at the image's /usr/local/bin/ruflo
[ "$*" = "shell reconcile" ] || {{ echo "unexpected arguments: $*" >&2; exit 90; }}
case "$STANDIN_RECONCILE" in
    ok) mkdir -p "$RUFLO_SHELL_STATE_DIR" && echo "{OK_SUMMARY}" > "$RUFLO_SHELL_STATE_DIR/summary" ;;
    fail) echo "npm error EACCES" >&2; exit 3 ;;
    *) echo "STANDIN_RECONCILE unset" >&2; exit 91 ;;
esac
"""

# Runs as root inside `unshare --mount`: lays the image's files over the machine's paths for this
# namespace only, then becomes the unprivileged user, as the container starts as UID 1000.
NAMESPACE_SETUP = f"""set -e
root=$1; shift
mount --bind "$root/home" /home
mount --bind "$root/run" /run
mount --bind "$root/etc-ssh" /etc/ssh
mount --bind "$root/profile.d" /etc/profile.d
mount --bind "$root/usr-local-bin" /usr/local/bin
mount --bind "$root/usr-local-share" /usr/local/share
exec setpriv --reuid={USER} --regid={USER} --init-groups -- "$@"
"""

# Values sshd_config's quoting must carry through unchanged.
HOSTILE_ENV = {
    "OPENAI_API_KEY": 'sk-"quoted" \\back\\slash # not a comment $(touch /tmp/ruflo-sshd-injected) \'single\' é\ttab  two',
    "RUFLO_PRICES": '{"gpt-4o": {"prompt": 2.5, "completion": 10}}',
    "ENDS_WITH_BACKSLASH": "trailing \\",
    "ESCAPED_SPACE": "a\\ b",
    "SPACES_AROUND": "  padded  ",
    "LOOKS_LIKE_TOKENS": "%h %u %% ${HOME} `id`",
    "EQUALS_INSIDE": "a=b=c",
    "ONLY_A_QUOTE": '"',
    "EMPTY": "",
    "LONG": "x" * 20_000,
}


def missing(what: str) -> None:
    """A prerequisite is absent: CI must not pass without this test, a developer may skip it."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but {what}: scripts/install must provide it")
    pytest.skip(what)


def require_prerequisites() -> None:
    if not os.access(SSHD, os.X_OK):
        missing(f"{SSHD} is not installed (Debian package openssh-server)")
    for tool, package in (("ssh", "openssh-client"), ("ssh-keygen", "openssh-client"),
                          ("scp", "openssh-client"), ("unshare", "util-linux"),
                          ("setpriv", "util-linux"), ("useradd", "passwd")):
        if shutil.which(tool) is None:
            missing(f"{tool} is not installed (Debian package {package})")
    if os.geteuid() != 0:
        missing("not root: making the throwaway user and the mount namespace needs root")


def ensure_user() -> pwd.struct_passwd:
    """The throwaway system user sshd runs as, made like the image's agent (bash, group tty)."""
    try:
        entry = pwd.getpwnam(USER)
    except KeyError:
        made = subprocess.run(["useradd", "--system", "--no-create-home", "--home-dir",
                               f"/home/{USER}", "--shell", "/bin/bash", "--groups", "tty", USER],
                              capture_output=True, text=True, timeout=60, check=False)
        if made.returncode not in (0, 9):  # 9: made meanwhile by a parallel run
            pytest.fail(f"useradd {USER} failed: {made.stderr.strip()}")
        entry = pwd.getpwnam(USER)
    assert entry.pw_dir == f"/home/{USER}", f"user {USER} exists with another home: {entry}"
    groups = subprocess.run(["id", "-nG", USER], capture_output=True, text=True, timeout=30,
                            check=True).stdout.split()
    if "tty" not in groups:
        subprocess.run(["usermod", "-aG", "tty", USER], check=True, timeout=60)
    return entry


class ShellContainer:
    """One boot of the shell image's start-up, with sshd listening on 127.0.0.1."""

    def __init__(self, root: Path, user: pwd.struct_passwd, reconcile: str) -> None:
        self.root = root
        self.user = user
        self.home_in_ns = Path(user.pw_dir)
        self.home = root / "home" / USER
        self.port = free_port()
        self.output = root / "boot.out"
        instructions = final_stage(parse_dockerfile(DOCKER / "shell.Dockerfile"))
        self.image_env = {name: value.replace(IMAGE_USER_HOME, str(self.home_in_ns))
                          for name, value in env_of(instructions).items()}
        self.state_in_ns = Path(self.image_env["RUFLO_SHELL_STATE_DIR"])
        self.state = self.home / self.state_in_ns.relative_to(self.home_in_ns)
        self.entrypoint, self.command = self.start_command(instructions)
        self.lay_out_image_files()
        self.client_key = self.make_client_key("client", authorized=True)
        self.stranger_key = self.make_client_key("stranger", authorized=False)
        self.process = self.start(reconcile)

    @staticmethod
    def start_command(instructions: list[Instruction]) -> tuple[list[str], list[str]]:
        entrypoint = next(i for i in instructions if i.keyword == "ENTRYPOINT").exec_form()
        command = next(i for i in instructions if i.keyword == "CMD").exec_form()
        assert entrypoint is not None
        assert command is not None
        assert entrypoint[:2] == ["/usr/bin/tini", "--"]
        return entrypoint[2:], command

    def lay_out_image_files(self) -> None:
        for folder in ("home", "run", "etc-ssh", "profile.d", "usr-local-bin",
                       "usr-local-share/ruflo-shell", "lib", "client"):
            (self.root / folder).mkdir(parents=True)
        (self.home / ".ssh").mkdir(parents=True)
        shutil.copy(SHELL_FILES / "sshrc", self.root / "etc-ssh" / "sshrc")
        shutil.copy(SHELL_FILES / "ruflo-shell-summary",
                    self.root / "usr-local-bin" / "ruflo-shell-summary")
        shutil.copy(SHELL_FILES / "profile.sh", self.root / "profile.d" / "ruflo-shell-summary.sh")
        # Sourced after the summary script (glob order): proves login shells read profile.d.
        (self.root / "profile.d" / "zz-test-marker.sh").write_text("echo PROFILE-D-READ >&2\n")
        (self.root / "usr-local-bin" / "ruflo").write_text(STANDIN_RUFLO)
        shutil.copy(SHELL_FILES / "boot.sh", self.root / "lib" / "boot.sh")
        # The one change to the image's sshd_config: the user it lets in.
        config = (SHELL_FILES / "sshd_config").read_text()
        assert "\nAllowUsers agent\n" in config
        (self.root / "usr-local-share" / "ruflo-shell" / "sshd_config").write_text(
            config.replace("\nAllowUsers agent\n", f"\nAllowUsers {USER}\n"))
        for script in ("usr-local-bin/ruflo", "usr-local-bin/ruflo-shell-summary", "lib/boot.sh"):
            (self.root / script).chmod(0o755)
        self.root.chmod(0o755)

    def make_client_key(self, name: str, *, authorized: bool) -> Path:
        key = self.root / "client" / name
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)],
                       check=True, timeout=60, stdin=subprocess.DEVNULL)
        if authorized:
            keys = self.home / ".ssh" / "authorized_keys"
            keys.write_text(key.with_suffix(".pub").read_text())
            keys.chmod(0o600)
        return key

    def start(self, reconcile: str) -> subprocess.Popen[bytes]:
        for path in (self.root / "home", self.root / "run"):
            for folder, _, files in os.walk(path):
                for name in [folder, *(os.path.join(folder, f) for f in files)]:
                    os.chown(name, self.user.pw_uid, self.user.pw_gid)
        boot = [str(self.root / "lib" / "boot.sh"), *self.entrypoint[1:]]
        sshd = [*self.command, "-p", str(self.port), "-o", "ListenAddress=127.0.0.1"]
        env = dict(self.image_env, STANDIN_RECONCILE=reconcile,
                   OPENAI_BASE_URL="http://litellm.litellm.svc:4000",
                   LITELLM_BASE_URL="http://litellm.litellm.svc:4000",
                   MULTI_LINE="one\ntwo", **HOSTILE_ENV)
        with self.output.open("wb") as output:
            process = subprocess.Popen(
                ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c",
                 NAMESPACE_SETUP, "namespace-setup", str(self.root), *boot, "--", *sshd],
                env=env, cwd=self.root, stdin=subprocess.DEVNULL, stdout=output,
                stderr=subprocess.STDOUT, start_new_session=True)
        def up() -> bool:
            if process.poll() is not None:
                text = self.output.read_text(errors="replace")
                if "mount" in text and ("ermission" in text or "not permitted" in text):
                    missing(f"bind mounts in a mount namespace are not allowed here:\n{text}")
                pytest.fail(f"boot.sh/sshd exited with {process.returncode}:\n{text}")
            return self.listening()

        wait_until(up, within=60, what="sshd never listened", explain=self.boot_output)
        return process

    def listening(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except OSError:
            return False
        return True

    def boot_output(self) -> str:
        return self.output.read_text(encoding="utf-8", errors="replace")

    def ssh_argv(self, *args: str, tty: bool = False, key: Path | None = None) -> list[str]:
        return ["ssh", "-F", "/dev/null", "-i", str(key or self.client_key), "-p", str(self.port),
                "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
                "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
                "-o", "ConnectTimeout=10", "-o", "IdentitiesOnly=yes",
                *(["-tt"] if tty else []), f"{USER}@127.0.0.1", *args]

    def ssh(self, *args: str, tty: bool = False,
            key: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.ssh_argv(*args, tty=tty, key=key), capture_output=True,
                              text=True, timeout=60, check=False, stdin=subprocess.DEVNULL,
                              env=self.client_env())

    def client_env(self) -> dict[str, str]:
        # Nothing of the test process's environment can reach the session from the client side.
        return {"PATH": "/usr/bin:/bin", "HOME": str(self.root / "client")}

    def interactive(self, typed: str) -> str:
        """A login shell on a pty (`ssh -tt` without a command), typed into; its output."""
        transcript = self.root / "interactive.out"
        with transcript.open("wb") as output:
            process = subprocess.Popen(self.ssh_argv(tty=True), stdin=subprocess.PIPE,
                                       stdout=output, stderr=subprocess.STDOUT,
                                       env=self.client_env())
            assert process.stdin is not None
            try:
                # stdin stays open until the shell exits: an EOF would end the pty session early.
                process.stdin.write(typed.encode())
                process.stdin.flush()
                assert process.wait(timeout=60) == 0, transcript.read_text(errors="replace")
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait()
                process.stdin.close()
        return transcript.read_text(encoding="utf-8", errors="replace").replace("\r\n", "\n")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture(scope="module")
def sshd_user() -> pwd.struct_passwd:
    require_prerequisites()
    return ensure_user()


def boot_container(user: pwd.struct_passwd, reconcile: str) -> Iterator[ShellContainer]:
    root = Path(tempfile.mkdtemp(prefix="ruflo-sshd-"))
    container = None
    try:
        container = ShellContainer(root, user, reconcile)
        yield container
    finally:
        if container is not None:
            container.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def shell(sshd_user: pwd.struct_passwd) -> Iterator[ShellContainer]:
    """Booted once for the module, with a reconcile that succeeds and writes its summary."""
    yield from boot_container(sshd_user, "ok")


@pytest.fixture
def failed_shell(sshd_user: pwd.struct_passwd) -> Iterator[ShellContainer]:
    yield from boot_container(sshd_user, "fail")


# -- the container environment, through SetEnv --------------------------------------------------

def test_non_interactive_command_sees_the_container_environment(shell: ShellContainer) -> None:
    result = shell.ssh("--", "printenv", "OPENAI_BASE_URL")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "http://litellm.litellm.svc:4000\n"


def test_hostile_values_reach_the_session_unchanged(shell: ShellContainer) -> None:
    result = shell.ssh("--", "env", "-0")
    assert result.returncode == 0, result.stderr
    session = dict(item.split("=", 1) for item in result.stdout.split("\0") if item)
    for name, value in HOSTILE_ENV.items():
        assert session.get(name) == value, name
    assert "MULTI_LINE" not in session
    assert "not passed to ssh sessions: MULTI_LINE" in shell.boot_output()
    # The image's PATH (mise's shims first) replaces sshd's default one; HOME is the session's.
    assert session["PATH"] == shell.image_env["PATH"]
    assert session["PATH"].startswith(f"/home/{USER}/.local/share/mise/shims:")
    assert session["HOME"] == f"/home/{USER}"
    assert session["USER"] == USER
    assert session["RUFLO_SHELL_STATE_DIR"] == str(shell.state_in_ns)
    injected = Path("/tmp/ruflo-sshd-injected")
    assert not injected.exists() or injected.stat().st_uid != shell.user.pw_uid


def test_only_authorized_keys_get_in(shell: ShellContainer) -> None:
    result = shell.ssh("--", "true", key=shell.stranger_key)
    assert result.returncode == 255
    assert "Permission denied" in result.stderr


# -- the summary line, for every kind of session ------------------------------------------------

def test_command_session_shows_the_summary_on_stderr_only(shell: ShellContainer) -> None:
    result = shell.ssh("--", "echo", "payload")
    assert result.returncode == 0
    assert result.stdout == "payload\n"
    assert result.stderr == OK_SUMMARY + "\n"


def test_tty_command_session_shows_the_summary_once_before_the_output(
        shell: ShellContainer) -> None:
    result = shell.ssh("--", "echo payload; printenv OPENAI_BASE_URL", tty=True)
    assert result.returncode == 0, result.stderr
    # A pty has one stream: the line and the command's output arrive together, in that order.
    assert result.stdout.replace("\r\n", "\n") == (
        f"{OK_SUMMARY}\npayload\nhttp://litellm.litellm.svc:4000\n")


def test_interactive_login_shell_shows_the_summary_once(shell: ShellContainer) -> None:
    transcript = shell.interactive('echo "MARK-$((6 * 7))-$0-$OPENAI_BASE_URL"; exit\n')
    assert transcript.count(OK_SUMMARY) == 1, transcript
    assert "PROFILE-D-READ" in transcript, "the login shell never read /etc/profile.d"
    assert "MARK-42--bash-http://litellm.litellm.svc:4000" in transcript
    assert transcript.index(OK_SUMMARY) < transcript.index("MARK-42")


def test_scp_is_not_disturbed_by_the_summary(shell: ShellContainer) -> None:
    """Legacy scp speaks its protocol on the session's stdout: the line must stay out of it."""
    payload = shell.root / "client" / "payload"
    payload.write_bytes(bytes(range(256)) * 64)
    for mode in ("-O", "-s"):
        target = f"copy{mode}"
        copied = subprocess.run(
            ["scp", mode, "-F", "/dev/null", "-i", str(shell.client_key), "-P", str(shell.port),
             "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
             "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
             str(payload), f"{USER}@127.0.0.1:{target}"],
            capture_output=True, text=True, timeout=60, check=False, env=shell.client_env())
        assert copied.returncode == 0, copied.stderr
        assert (shell.home / target).read_bytes() == payload.read_bytes()


def test_summary_comes_from_the_reconcile(shell: ShellContainer) -> None:
    assert (shell.state / "summary").read_text(encoding="utf-8") == OK_SUMMARY + "\n"
    assert "reconcile finished" in shell.boot_output()
    assert "Server listening on 127.0.0.1 port" in shell.boot_output()


# -- a failed reconcile -------------------------------------------------------------------------

def test_failing_reconcile_still_starts_sshd_and_every_session_shows_the_warning(
        failed_shell: ShellContainer) -> None:
    boot_log = failed_shell.state_in_ns / "boot.log"
    warning = "⚠ ruflo-shell: reconcile at boot exited with code 3 @ "
    result = failed_shell.ssh("--", "printenv", "OPENAI_BASE_URL")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "http://litellm.litellm.svc:4000\n"
    assert result.stderr.startswith(warning)
    assert result.stderr.endswith(f" — see {boot_log}\n")
    assert result.stderr.count("\n") == 1
    transcript = failed_shell.interactive("echo MARK-$((6 * 7)); exit\n")
    assert transcript.count(warning) == 1, transcript
    assert "MARK-42" in transcript
    assert "reconcile exited with code 3; starting sshd anyway" in failed_shell.boot_output()
