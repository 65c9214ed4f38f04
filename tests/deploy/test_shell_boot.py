"""The shell image's boot sequence, run here as the image runs it but with stand-ins: a `ruflo` on
PATH that fails, hangs or succeeds, and an sshd that records it was started. Whatever the
reconcile does, sshd starts, the login summary says what happened, and boot exits as sshd does.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from deploy_files import SHELL_FILES

from waiting import wait_until

pytestmark = pytest.mark.integration

BOOT = SHELL_FILES / "boot.sh"
SUMMARY_SCRIPT = SHELL_FILES / "ruflo-shell-summary"
PROFILE = SHELL_FILES / "profile.sh"

FAKE_RUFLO = """#!/bin/sh
# stand-in for `ruflo shell reconcile`: behaviour chosen by FAKE_RUFLO_MODE
echo "$$" > "$FAKE_DIR/ruflo.pid"
echo "$*" > "$FAKE_DIR/ruflo.args"
case "$FAKE_RUFLO_MODE" in
    fail) echo "boom" >&2; exit 3 ;;
    hang) sleep 300 & echo "$!" > "$FAKE_DIR/grandchild.pid"; wait ;;
    ok) mkdir -p "$RUFLO_SHELL_STATE_DIR"
        echo "✓ ruflo-shell: 7 installed, 0 already present, 0 removed @ 2026-05-03T14:22:11Z" \
            > "$RUFLO_SHELL_STATE_DIR/summary"; exit 0 ;;
    silent) exit 0 ;;
esac
"""

FAKE_SSHD = """#!/bin/sh
# stand-in for sshd: records its arguments and the config it was given, exits with FAKE_SSHD_RC
printf '%s\\n' "$@" > "$FAKE_DIR/sshd.args"
while [ $# -gt 0 ]; do
    if [ "$1" = "-f" ]; then cp "$2" "$FAKE_DIR/sshd_config.seen"; fi
    shift
done
exit "${FAKE_SSHD_RC:-0}"
"""


class Boot:
    """One container's worth of directories and stand-ins."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.bin = root / "bin"
        self.fake = root / "fake"
        self.home = root / "home"
        self.state = self.home / ".local" / "state" / "ruflo-shell"
        self.run_dir = root / "run"
        self.keys = root / "keys"
        for folder in (self.bin, self.fake, self.home):
            folder.mkdir(parents=True)
        write_script(self.bin / "ruflo", FAKE_RUFLO)
        write_script(self.fake / "sshd", FAKE_SSHD)
        self.base_config = root / "base_sshd_config"
        self.base_config.write_text("Port 2222\n")
        # Placeholder host keys: making real ones (RSA above all) is slow; one test does it.
        self.keys.mkdir()
        for kind in ("ed25519", "ecdsa", "rsa"):
            (self.keys / f"ssh_host_{kind}_key").write_text("placeholder\n")

    def env(self, **extra: str) -> dict[str, str]:
        system_path = "/usr/local/bin:/usr/bin:/bin"
        env = {"PATH": f"{self.bin}:{system_path}", "HOME": str(self.home),
               "FAKE_DIR": str(self.fake), "RUFLO_SHELL_STATE_DIR": str(self.state),
               "LANG": "C.UTF-8"}
        env.update(extra)
        return env

    def argv(self, timeout: int = 5) -> list[str]:
        return ["bash", str(BOOT), "--reconcile-timeout", str(timeout), "--run-dir",
                str(self.run_dir), "--host-key-dir", str(self.keys), "--sshd-base-config",
                str(self.base_config), "--", str(self.fake / "sshd"), "-D", "-e", "-f",
                str(self.run_dir / "sshd_config")]

    def run(self, timeout: int = 5, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(timeout), env=self.env(**extra), capture_output=True,
                              text=True, timeout=60, check=False)

    @property
    def sshd_started(self) -> bool:
        return (self.fake / "sshd.args").exists()

    def summary(self) -> str:
        return (self.state / "summary").read_text(encoding="utf-8")

    def boot_log(self) -> str:
        return (self.state / "boot.log").read_text(encoding="utf-8")

    def setenv(self) -> dict[str, str]:
        """The variables the written sshd_config hands to sessions, decoded as sshd does."""
        lines = [line for line in (self.fake / "sshd_config.seen").read_text().splitlines()
                 if line.startswith("SetEnv ")]
        assert len(lines) <= 1, "sshd keeps only the first SetEnv line"
        if not lines:
            return {}
        return dict(word.split("=", 1) for word in sshd_argv_split(lines[0])[1:])


def write_script(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o755)


def sshd_argv_split(line: str) -> list[str]:
    """OpenSSH's argv_split (misc.c), which reads sshd_config lines: double or single quotes
    group, and a backslash escapes a quote, a backslash, or (outside quotes) a space."""
    words: list[str] = []
    i = 0
    while i < len(line):
        if line[i] in " \t":
            i += 1
            continue
        quote = ""
        word = []
        while i < len(line):
            char = line[i]
            if char == "\\" and i + 1 < len(line) and (
                    line[i + 1] in "'\"\\" or (not quote and line[i + 1] == " ")):
                i += 1
                word.append(line[i])
            elif not quote and char in " \t":
                break
            elif not quote and char in "\"'":
                quote = char
            elif quote and char == quote:
                quote = ""
            else:
                word.append(char)
            i += 1
        if quote:
            raise ValueError(f"unterminated quote in {line!r}")
        words.append("".join(word))
    return words


@pytest.fixture
def boot(tmp_path: Path) -> Boot:
    return Boot(tmp_path)


def test_failing_reconcile_still_starts_sshd(boot: Boot) -> None:
    result = boot.run(FAKE_RUFLO_MODE="fail", FAKE_SSHD_RC="7")
    assert boot.sshd_started
    assert result.returncode == 7, "boot exits as sshd does (it execs it)"
    assert (boot.fake / "ruflo.args").read_text().split() == ["shell", "reconcile"]
    summary = boot.summary()
    assert summary.startswith("⚠ ruflo-shell: reconcile at boot exited with code 3 @ ")
    assert str(boot.state / "boot.log") in summary
    log = boot.boot_log()
    assert "reconcile exited with code 3; starting sshd anyway" in log
    assert "starting: " in log
    args = (boot.fake / "sshd.args").read_text().split("\n")
    assert args[:4] == ["-D", "-e", "-f", str(boot.run_dir / "sshd_config")]


def test_hanging_reconcile_is_stopped_at_the_bound_and_sshd_starts(boot: Boot) -> None:
    started = time.monotonic()
    result = boot.run(timeout=1, FAKE_RUFLO_MODE="hang")
    elapsed = time.monotonic() - started
    assert result.returncode == 0
    assert boot.sshd_started
    assert elapsed < 30, "boot waited for the hung reconcile"
    assert "timed out after 1 s and was stopped" in boot.summary()
    # The reconcile and what it started are gone, not left running beside sshd.
    for name in ("ruflo.pid", "grandchild.pid"):
        pid = int((boot.fake / name).read_text())
        assert not process_alive(pid), f"{name} {pid} survived the boot timeout"


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "\nState:\tZ" in status.read_text())


def test_missing_ruflo_still_starts_sshd(boot: Boot) -> None:
    (boot.bin / "ruflo").unlink()
    result = boot.run(FAKE_SSHD_RC="0")
    assert result.returncode == 0
    assert boot.sshd_started
    assert "ruflo is not on PATH" in boot.summary()


def test_successful_reconcile_keeps_its_own_summary(boot: Boot) -> None:
    boot.run(FAKE_RUFLO_MODE="ok")
    assert boot.sshd_started
    assert boot.summary().startswith("✓ ruflo-shell: 7 installed")


def test_an_old_green_summary_is_not_shown_after_a_failed_boot(boot: Boot) -> None:
    boot.state.mkdir(parents=True)
    old = boot.state / "summary"
    old.write_text("✓ ruflo-shell: 7 installed, 0 already present, 0 removed @ 2026-01-01T00:00:00Z\n")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    boot.run(FAKE_RUFLO_MODE="fail")
    assert boot.summary().startswith("⚠ ruflo-shell: reconcile at boot exited with code 3")


def test_a_reconcile_that_writes_no_summary_is_reported(boot: Boot) -> None:
    boot.run(FAKE_RUFLO_MODE="silent")
    assert "finished but wrote no summary" in boot.summary()


def test_container_environment_reaches_ssh_sessions_intact(boot: Boot) -> None:
    hostile = 'sk-"quoted" \\back\\slash # not a comment $(touch /tmp/x) \'single\' é'
    boot.run(FAKE_RUFLO_MODE="ok", OPENAI_API_KEY=hostile,
             OPENAI_BASE_URL="http://litellm.litellm.svc:4000",
             RUFLO_PRICES='{"gpt-4o": {"prompt": 2.5, "completion": 10}}',
             MULTI_LINE="one\ntwo", TERM="xterm", EMPTY="")
    passed = boot.setenv()
    assert passed["OPENAI_API_KEY"] == hostile
    assert passed["OPENAI_BASE_URL"] == "http://litellm.litellm.svc:4000"
    assert passed["RUFLO_PRICES"] == '{"gpt-4o": {"prompt": 2.5, "completion": 10}}'
    assert passed["PATH"].startswith(str(boot.bin))
    assert passed["EMPTY"] == ""
    # sshd sets these per session itself; a value sshd_config cannot hold is left out, loudly.
    assert "HOME" not in passed
    assert "TERM" not in passed
    assert "MULTI_LINE" not in passed
    assert "not passed to ssh sessions: MULTI_LINE" in boot.boot_log()
    config = (boot.fake / "sshd_config.seen").read_text()
    assert config.rstrip().endswith(f"Include {boot.base_config}")
    assert oct((boot.run_dir / "sshd_config").stat().st_mode & 0o777) == "0o600"


def test_sshd_argv_split_port_reads_quotes_as_openssh_does() -> None:
    assert sshd_argv_split('SetEnv "A=x y" B=\\"z\\" \'C=#\'') == ["SetEnv", "A=x y", 'B="z"', "C=#"]
    with pytest.raises(ValueError, match="unterminated"):
        sshd_argv_split('SetEnv "A=x')


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="ssh-keygen is not installed")
def test_host_keys_are_made_once_and_kept(boot: Boot) -> None:
    shutil.rmtree(boot.keys)
    boot.run(FAKE_RUFLO_MODE="ok")
    keys = sorted(boot.keys.glob("ssh_host_*_key"))
    assert [k.name for k in keys] == ["ssh_host_ecdsa_key", "ssh_host_ed25519_key",
                                      "ssh_host_rsa_key"]
    assert all(oct(k.stat().st_mode & 0o777) == "0o600" for k in keys)
    first = {k.name: k.read_bytes() for k in keys}
    config = (boot.fake / "sshd_config.seen").read_text()
    assert all(f"HostKey {k}" in config for k in keys)
    (boot.fake / "sshd.args").unlink()
    boot.run(FAKE_RUFLO_MODE="ok")
    assert {k.name: k.read_bytes() for k in boot.keys.glob("ssh_host_*_key")} == first


def test_sigterm_during_the_reconcile_stops_it_without_starting_sshd(boot: Boot) -> None:
    process = subprocess.Popen(boot.argv(timeout=60), env=boot.env(FAKE_RUFLO_MODE="hang"),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               start_new_session=True)
    try:
        wait_until((boot.fake / "grandchild.pid").exists,
                   what="the stand-in reconcile never started")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 143
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
    assert not boot.sshd_started
    assert "got TERM during the reconcile" in boot.boot_log()
    ruflo_pid = int((boot.fake / "ruflo.pid").read_text())
    wait_until(lambda: not process_alive(ruflo_pid), what="the stand-in ruflo lives on")


def test_missing_sshd_base_config_refuses_to_start_sshd(boot: Boot) -> None:
    """sshd skips an Include that matches nothing and would run on its defaults."""
    boot.base_config.unlink()
    result = boot.run(FAKE_RUFLO_MODE="ok")
    assert result.returncode == 78
    assert f"{boot.base_config} is missing or unreadable; sshd was not started" in result.stderr
    assert not boot.sshd_started
    assert not (boot.fake / "ruflo.args").exists(), "no reconcile for an image that cannot serve"


def test_bad_arguments_are_refused(boot: Boot) -> None:
    result = subprocess.run(["bash", str(BOOT), "--reconcile-timeout", "soon", "--", "true"],
                            env=boot.env(), capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 64
    assert "whole seconds" in result.stderr
    result = subprocess.run(["bash", str(BOOT)], env=boot.env(), capture_output=True, text=True,
                            timeout=30, check=False)
    assert result.returncode == 64
    assert "no sshd command" in result.stderr


# -- the line at login -----------------------------------------------------------------------

def settings_state_path(env: dict[str, str]) -> Path:
    """Settings.shell_state_path as a process with exactly this environment computes it
    (platformdirs reads HOME and XDG_DATA_HOME from the process)."""
    code = "from ruflo.config import load_settings; print(load_settings().shell_state_path)"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                            text=True, timeout=60, check=True)
    return Path(result.stdout.strip())


def test_summary_script_reads_where_settings_say(boot: Boot) -> None:
    home = str(boot.home)
    for env in ({"RUFLO_SHELL_STATE_DIR": str(boot.state)},
                {"RUFLO_DATA_DIR": str(boot.root / "data")},
                {"XDG_DATA_HOME": str(boot.root / "xdg")}, {}):
        env = dict(env, HOME=home, PATH="/usr/bin:/bin")
        expected = settings_state_path(env) / "summary"
        assert str(expected).startswith(str(boot.root))
        expected.parent.mkdir(parents=True, exist_ok=True)
        expected.write_text(f"line for {sorted(env)}\n")
        result = subprocess.run([str(SUMMARY_SCRIPT)], env=env, capture_output=True, text=True,
                                timeout=30, check=False)
        assert result.returncode == 0
        assert result.stdout == "", "stdout belongs to the session (scp, mosh's handshake)"
        assert result.stderr == f"line for {sorted(env)}\n"
        expected.unlink()


def test_summary_script_is_silent_without_a_summary(tmp_path: Path) -> None:
    result = subprocess.run([str(SUMMARY_SCRIPT)], env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
                            capture_output=True, text=True, timeout=30, check=False)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_profile_prints_for_shells_sshd_did_not_start(tmp_path: Path) -> None:
    """mosh-server's and kubectl exec's login shells print the line; sshd's own children got it
    from sshrc already, so they stay quiet."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shutil.copy(shutil.which("bash") or "/bin/bash", bin_dir / "sshd")
    shutil.copy(shutil.which("bash") or "/bin/bash", bin_dir / "mosh-server")
    profile = tmp_path / "profile.sh"
    # Point the profile at the summary script from the repository, not /usr/local/bin.
    profile.write_text(PROFILE.read_text().replace("/usr/local/bin/ruflo-shell-summary",
                                                   str(SUMMARY_SCRIPT)))
    state = tmp_path / "state"
    state.mkdir()
    (state / "summary").write_text("✓ ruflo-shell: 1 installed\n")
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "RUFLO_SHELL_STATE_DIR": str(state)}
    # `; true` keeps the parent from exec'ing the child, so the child's parent is that program.
    shown = {}
    for parent in ("sshd", "mosh-server"):
        result = subprocess.run([str(bin_dir / parent), "-c", f"bash -c '. {profile}'; true"],
                                env=env, capture_output=True, text=True, timeout=30, check=False)
        shown[parent] = result.stderr
    assert shown == {"sshd": "", "mosh-server": "✓ ruflo-shell: 1 installed\n"}


def test_sshrc_runs_the_summary_script() -> None:
    text = (SHELL_FILES / "sshrc").read_text()
    commands = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    assert commands == ["/usr/local/bin/ruflo-shell-summary"]


def test_boot_and_login_agree_on_the_state_directory() -> None:
    rule = "${RUFLO_SHELL_STATE_DIR:-${RUFLO_DATA_DIR:-${XDG_DATA_HOME:-$HOME/.local/share}/ruflo}/shell}"
    assert rule in BOOT.read_text()
    assert rule in SUMMARY_SCRIPT.read_text()
