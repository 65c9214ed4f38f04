"""Real npm and real pipx, installing into temporary folders from the public registries: install,
a second run that changes nothing, removal, and "already absent" ever after."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from ruflo.shell import Outcome, ShellState, parse_inventory, reconcile

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def outcomes(report: object) -> dict[str, Outcome]:
    return {r.label: r.outcome for r in report.results}  # type: ignore[attr-defined]


@pytest.mark.skipif(shutil.which("npm") is None, reason="npm is not installed")
def test_real_npm_global_prefix_in_a_temp_folder(tmp_path: Path) -> None:
    env = {**os.environ, "NPM_CONFIG_PREFIX": str(tmp_path / "npm-global"),
           "npm_config_cache": str(tmp_path / "npm-cache"), "HOME": str(tmp_path / "home")}
    state = ShellState(tmp_path / "state")
    wanted = parse_inventory("npm-global: [is-number@latest, is-odd@3.0.1]\n", Path("i.yaml"))

    first = reconcile(wanted, state, env=env, timeout=180)
    assert outcomes(first) == {"npm-global:is-number@latest": Outcome.INSTALLED,
                               "npm-global:is-odd@3.0.1": Outcome.INSTALLED}, first.to_json()
    assert (tmp_path / "npm-global" / "lib" / "node_modules" / "is-number").is_dir()

    second = reconcile(wanted, state, env=env, timeout=180)
    assert set(outcomes(second).values()) == {Outcome.PRESENT}
    assert second.summary.startswith("✓ ruflo-shell: 0 installed, 2 already present, 0 removed")

    removal = parse_inventory("removed:\n  npm-global: [is-number, is-odd]\n", Path("i.yaml"))
    gone = reconcile(removal, state, env=env, timeout=180)
    assert set(outcomes(gone).values()) == {Outcome.REMOVED}
    assert not (tmp_path / "npm-global" / "lib" / "node_modules" / "is-number").exists()
    for _ in range(2):
        after = reconcile(removal, state, env=env, timeout=180)
        assert set(outcomes(after).values()) == {Outcome.ABSENT}
        assert "0 removed" in after.summary


def test_real_pipx_home_in_a_temp_folder(tmp_path: Path) -> None:
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": os.pathsep.join((str(bin_dir), os.environ.get("PATH", ""))),
           "PIPX_HOME": str(tmp_path / "pipx"), "PIPX_BIN_DIR": str(tmp_path / "bin"),
           "PIPX_MAN_DIR": str(tmp_path / "man"), "HOME": str(tmp_path / "home")}
    state = ShellState(tmp_path / "state")
    wanted = parse_inventory("pipx: [pycowsay==0.0.0.2]\n", Path("i.yaml"))

    first = reconcile(wanted, state, env=env, timeout=240)
    assert outcomes(first) == {"pipx:pycowsay==0.0.0.2": Outcome.INSTALLED}, first.to_json()
    assert (tmp_path / "bin" / "pycowsay").exists()

    second = reconcile(wanted, state, env=env, timeout=240)
    assert outcomes(second) == {"pipx:pycowsay==0.0.0.2": Outcome.PRESENT}
    assert not any(c.argv[1:2] == ("install",) for r in second.results for c in r.commands)

    removal = parse_inventory("removed:\n  pipx: [pycowsay]\n", Path("i.yaml"))
    assert outcomes(reconcile(removal, state, env=env, timeout=240)) == {
        "pipx:pycowsay": Outcome.REMOVED}
    assert not (tmp_path / "bin" / "pycowsay").exists()
    for _ in range(2):  # pipx uninstall of an absent app exits 1: never tried, never "failed"
        after = reconcile(removal, state, env=env, timeout=240)
        assert outcomes(after) == {"pipx:pycowsay": Outcome.ABSENT}
        assert not after.failed
