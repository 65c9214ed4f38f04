"""Hostile files through the real `ruflo` program: YAML alias bombs and deep nesting in workload
and org files, and RVF files nested 100,000 deep, truncated, mistyped or huge. Each ends in one
`error:` line and exit 2, with bounded memory (the child's peak RSS is measured), nothing stored."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cli_harness import RUFLO, Cli

from ruflo.workload import MAX_YAML_DEPTH, MAX_YAML_NODES, parse_workload

pytestmark = pytest.mark.integration

PEAK_RSS_LIMIT_MIB = 400
"""Far above what refusing takes (about 60 MiB) and far below what expanding took (the billion
laughs grew `ruflo orchestrate` past 2.9 GiB)."""

MEASURE = ("import resource, subprocess, sys\n"
           "code = subprocess.call(sys.argv[1:])\n"
           "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n"
           "sys.exit(code)\n")


def run_measured(cli: Cli, *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run `ruflo ARGS` under a small parent that reports its child's peak RSS (MiB)."""
    done = subprocess.run([sys.executable, "-c", MEASURE, str(RUFLO), *args], env=cli.env,
                          capture_output=True, text=True, timeout=300, check=False)
    *rest, peak = done.stderr.rstrip("\n").split("\n")
    done.stderr = "\n".join(rest)
    return done, int(peak) / 1024


def refused_line(done: subprocess.CompletedProcess[str]) -> str:
    """The one line a refusal prints (after the boot trace, which starts each line with a
    setting name or two spaces)."""
    assert done.returncode == 2, (done.stdout, done.stderr[-2000:])
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, done.stderr[-2000:]
    return errors[0]


def nothing_stored(cli: Cli) -> None:
    if not (cli.data_dir / "ruflo.db").exists():
        return
    store = cli.store()
    try:
        assert store.list_hives() == []
        assert list(store.iter_conversations()) == []
    finally:
        store.close()


LAUGHS = "\n".join(
    [f"      l0: &l0 [{', '.join(['lol'] * 9)}]"]
    + [f"      l{n}: &l{n} [{', '.join([f'*l{n - 1}'] * 9)}]" for n in range(1, 10)])
"""A 9^10-value "billion laughs" in about 600 bytes."""

WORKLOAD_HEAD = "name: hostile\nobjective: laugh\ntasks:\n  - id: t1\nagents:\n  - name: joker\n"


def deep_flow_lists(levels: int) -> str:
    return "[" * levels + "]" * levels


def deep_flow_maps(levels: int) -> str:
    return "{a: " * levels + "1" + "}" * levels


def alias_deepener() -> str:
    """An anchor 40 levels deep used 40 levels down: 80 levels once the alias is followed."""
    half = MAX_YAML_DEPTH // 2 + 8
    return (f"      x: &deep {deep_flow_lists(half)}\n"
            f"      y: {'[' * half}*deep{']' * half}\n")


WORKLOADS = {
    "billion-laughs": (WORKLOAD_HEAD + "    config:\n" + LAUGHS + "\n", "too many values"),
    "deep-lists": (WORKLOAD_HEAD + f"    config: {{x: {deep_flow_lists(10_000)}}}\n",
                   "nested too deep"),
    "deep-maps": (WORKLOAD_HEAD + f"    config: {{x: {deep_flow_maps(10_000)}}}\n",
                  "nested too deep"),
    "deep-block-lists": (WORKLOAD_HEAD + "    config:\n      x:\n      " + "- " * 10_000
                         + "end\n", "nested too deep"),
    "deep-through-an-alias": (WORKLOAD_HEAD + "    config:\n" + alias_deepener(),
                              "nested too deep through the alias *deep"),
    "huge-flow-mapping": (WORKLOAD_HEAD + "    config: {" + ", ".join(
        f"k{n}: {n}" for n in range(MAX_YAML_NODES // 2 + 1)) + "}\n", "too many values"),
}


@pytest.mark.parametrize("member", list(WORKLOADS))
def test_hostile_workloads_end_in_one_line_with_nothing_stored(
        cli: Cli, tmp_path: Path, member: str) -> None:
    text, words = WORKLOADS[member]
    path = tmp_path / f"{member}.yaml"
    path.write_text(text)
    done, peak = run_measured(cli, "orchestrate", "--workload", str(path), "--agents", "1")
    line = refused_line(done)
    assert line.startswith(f"error: workload {path}: ") or line.startswith(f"error: {path}: ")
    assert words in line
    assert line.endswith("nothing was stored")
    assert peak < PEAK_RSS_LIMIT_MIB, f"peak RSS {peak:.0f} MiB"
    nothing_stored(cli)


def test_simulate_refuses_the_same_bomb(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "laughs.yaml"
    path.write_text(WORKLOADS["billion-laughs"][0])
    line = refused_line(cli("simulate", str(path)))
    assert "too many values" in line


def test_an_alias_bomb_in_an_org_file_is_refused(cli: Cli, tmp_path: Path) -> None:
    org = tmp_path / "org.yaml"
    org.write_text("agents:\n  - name: ceo\n    config:\n" + LAUGHS + "\n")
    done, peak = run_measured(cli, "orchestrate", "--mode", "company", "--org", str(org),
                              "ship it")
    line = refused_line(done)
    assert line.startswith(f"error: org {org}: too many values")
    assert line.endswith("nothing was stored")
    assert peak < PEAK_RSS_LIMIT_MIB, f"peak RSS {peak:.0f} MiB"
    nothing_stored(cli)


def test_a_workload_larger_than_the_limit_is_refused_unread(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    with path.open("wb") as handle:
        handle.truncate(17 * 1024 * 1024)  # sparse: no disk used, never read
    line = refused_line(cli("orchestrate", "--workload", str(path)))
    assert line == (f"error: workload file {path} is 17.0 MiB, more than the 16 MiB a workload "
                    "file may be; nothing was stored")


def test_anchors_within_bounds_still_load() -> None:
    """Sharing an agent's config through an anchor and a merge key is ordinary YAML."""
    workload = parse_workload(
        "name: shared\nobjective: x\ntasks: [{id: t}]\nagents:\n"
        "  - name: a\n    config: &base {command: [make, test], timeout: 30}\n"
        "  - name: b\n    config: {<<: *base, timeout: 60}\n"
        "  - name: c\n    config: *base\n")
    configs = [a.adapter_config for a in workload.agents]
    assert configs == [{"command": ["make", "test"], "timeout": 30},
                       {"command": ["make", "test"], "timeout": 60},
                       {"command": ["make", "test"], "timeout": 30}]


# -- RVF -------------------------------------------------------------------------------------------

def conversation(**fields: object) -> str:
    import json

    doc = {"_id": "c1", "title": "t", "model": "m",
           "messages": [{"id": "m1", "from": "user", "content": "hi"}], **fields}
    return json.dumps({"rvf_version": "2.0", "format": "rvf-database",
                       "collections": {"conversations": {"c1": doc}}})


RVF = {
    "deep-arrays": ('{"rvf_version": "2.0", "collections": {"users": {"u": {"x": '
                    + "[" * 100_000 + "]" * 100_000 + "}}}}", "nested more than 64 levels"),
    "deep-objects": ('{"rvf_version": "2.0", "collections": {"users": {"u": {"x": '
                     + '{"a": ' * 100_000 + "1" + "}" * 100_000 + "}}}}",
                     "nested more than 64 levels"),
    "just-too-deep": ('{"rvf_version": "2.0", "collections": {"users": {"u": {"x": '
                      + "[" * 70 + "]" * 70 + "}}}}", "nested more than 64 levels"),
    "truncated": (conversation()[:-9], "is not valid JSON"),
    "preprompt-object": (conversation(preprompt={"x": 1}),
                         "preprompt must be a string or null, not dict"),
    "root-list": (conversation(rootMessageId=[1]), "rootMessageId must be a string or null"),
    "date-out-of-range": (conversation(createdAt=1e300), "out of range"),
    "owner-object": (conversation(userId={"a": 1}), "userId/sessionId must be a string"),
}


@pytest.mark.parametrize("member", list(RVF))
def test_hostile_rvf_files_end_in_one_line_with_nothing_imported(
        cli: Cli, tmp_path: Path, member: str) -> None:
    text, words = RVF[member]
    path = tmp_path / f"{member}.rvf.json"
    path.write_text(text)
    done, peak = run_measured(cli, "rvf", "import", str(path))
    line = refused_line(done)
    assert line.startswith(f"error: {path}")
    assert words in line
    assert line.endswith("nothing was imported")
    assert peak < PEAK_RSS_LIMIT_MIB, f"peak RSS {peak:.0f} MiB"
    nothing_stored(cli)


def test_an_rvf_file_larger_than_the_limit_is_refused_unread(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "huge.rvf.json"
    with path.open("wb") as handle:
        handle.truncate(int(1.5 * 1024 ** 3))  # sparse
    done, peak = run_measured(cli, "rvf", "import", str(path))
    line = refused_line(done)
    assert line == (f"error: {path} is 1.5 GiB, more than the 1 GiB an RVF file may be; "
                    "nothing was imported")
    assert peak < PEAK_RSS_LIMIT_MIB, f"peak RSS {peak:.0f} MiB"
    nothing_stored(cli)


def test_the_measure_sees_a_big_child() -> None:
    """The RSS figure above is the child's: a child that holds 200 MiB reports at least that."""
    done = subprocess.run([sys.executable, "-c", MEASURE, sys.executable, "-c",
                           "b = bytearray(200 * 1024 * 1024); b[::4096] = b'x' * len(b[::4096])"],
                          capture_output=True, text=True, timeout=60, check=True,
                          env=dict(os.environ))
    assert int(done.stderr.split()[-1]) / 1024 >= 200
