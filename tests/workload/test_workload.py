"""Workload files: the documented format loads; every mistake is named with file, field, problem."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ruflo.errors import PolicyError
from ruflo.workload import load_workload, parse_workload

VALID = """
name: small-feature
objective: Add a --verbose flag
verify: pytest -q
fixture: repo
tasks:
  - id: design
    title: Design the flag
    skills: [python]
    effort: 1
  - id: build
    skills: python
    effort: 3
    priority: 2
    depends_on: [design]
    verify: pytest -q tests/test_flag.py
  - id: docs
    skills: [docs]
    depends_on: [design]
agents:
  - name: lead
    role: cto
    capabilities: plans and reviews
    budget: {max_tokens: 100000}
  - name: dev
    skills: [python]
    model: gpt-4o-mini
    reports_to: lead
    adapter: process
    config: {command: ["claude", "-p"]}
  - name: writer
    skills: [docs]
    reports_to: lead
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "work.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_the_documented_format_loads(tmp_path: Path) -> None:
    (tmp_path / "repo").mkdir()
    workload = load_workload(write(tmp_path, VALID))
    assert workload.name == "small-feature"
    assert [t.id for t in workload.tasks] == ["design", "build", "docs"]
    build = workload.tasks[1]
    assert build.skills == ("python",)
    assert build.depends_on == ("design",)
    assert build.priority == 2
    assert build.title == "build"  # the id when no title is given
    assert workload.fixture == (tmp_path / "repo").resolve()
    assert workload.has_org
    assert workload.agents[1].reports_to == "lead"
    assert workload.agents[0].budget.max_tokens == 100000
    assert workload.agents[1].adapter_config == {"command": ["claude", "-p"]}
    assert workload.skills == ["python", "docs"]


def test_the_docs_example_is_valid(tmp_path: Path) -> None:
    doc = Path(__file__).parents[2] / "docs" / "workloads.md"
    block = doc.read_text(encoding="utf-8").split("```yaml\n")[1].split("```")[0]
    (tmp_path / "repo").mkdir()
    workload = parse_workload(block, source=tmp_path / "work.yaml")
    assert len(workload.tasks) == 3
    assert workload.has_org


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("depends_on: [design]\n    verify", "depends_on: [desing]\n    verify"),
         r"tasks\[1\] \('build'\).depends_on: unknown task 'desing' \(did you mean 'design'\?\)"),
        (("  - id: docs", "  - id: build"), r"tasks\[2\]: duplicate id 'build'"),
        (("    effort: 1\n", "    effort: 1\n    depends_on: [docs]\n"),
         "dependency cycle design → docs → design|dependency cycle docs → design → docs"),
        (("    title: Design the flag\n", ""), None),
        (("effort: 3", "effort: -3"), r"tasks\[1\] \('build'\).effort: Input should be greater than 0"),
        (("priority: 2", "priorty: 2"), r"unknown field \(did you mean 'priority'\?\)"),
        (("name: small-feature\n", ""), "name: is required"),
        (("reports_to: lead\n    adapter", "reports_to: boss\n    adapter"),
         "reports to 'boss', who is not in the org"),
        (("    role: cto\n", "    role: cto\n    reports_to: writer\n"), "reporting cycle"),
        (("adapter: process", "adapter: telepathy"), r"agents\[1\] \('dev'\).adapter"),
        (("fixture: repo", "fixture: nowhere"), "fixture: folder 'nowhere' not found"),
        (("  - name: writer", "  - name: dev"), r"agents\[2\]: duplicate name 'dev'"),
        (("    skills: [docs]\n    reports_to: lead\n",
          "    skills: [docs]\n    reports_to: lead\n    config: {max_tokens: 0}\n"),
         r"agents\[2\].config.max_tokens: a whole number of tokens above 0"),
        (("    skills: [docs]\n    reports_to: lead\n",
          "    skills: [docs]\n    reports_to: lead\n    config: {max_tokens: -5}\n"),
         r"agents\[2\].config.max_tokens: a whole number of tokens above 0"),
        (("    skills: [docs]\n    reports_to: lead\n",
          "    skills: [docs]\n    reports_to: lead\n    config: {max_tokens: lots}\n"),
         r"agents\[2\].config.max_tokens: a whole number of tokens above 0"),
        (("    skills: [docs]\n    reports_to: lead\n",
          "    skills: [docs]\n    reports_to: lead\n    config: {max_tokens: 1.5}\n"),
         r"agents\[2\].config.max_tokens: a whole number of tokens above 0"),
    ],
)
def test_mistakes_are_named_with_file_field_and_problem(
    tmp_path: Path, edit: tuple[str, str], message: str | None
) -> None:
    (tmp_path / "repo").mkdir()
    old, new = edit
    assert old in VALID
    path = write(tmp_path, VALID.replace(old, new, 1))
    if message is None:  # a harmless edit: still valid
        load_workload(path)
        return
    with pytest.raises(PolicyError, match=message) as caught:
        load_workload(path)
    assert str(path) in str(caught.value)
    assert "Traceback" not in str(caught.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: x\ntasks: [\n", "not valid YAML at line"),
        ("- just a list", "expected a mapping"),
        ("name: x\n", "at least one task is required"),
        ("name: x\ntasks:\n  - title: no id\n", r"tasks\[0\].id: is required"),
        ("name: x\ntasks: []\ngenerate: {shape: spiral, tasks: 3}\n", "generate.shape"),
    ],
)
def test_broken_files_are_refused(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        load_workload(write(tmp_path, text))


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="does not exist"):
        load_workload(tmp_path / "nope.yaml")


def test_generated_shapes_load(tmp_path: Path) -> None:
    workload = load_workload(write(tmp_path, "name: g\ngenerate: {shape: deep, tasks: 90}\n"))
    assert len(workload.tasks) == 90
    assert workload.tasks[1].depends_on == ("t0",)


def ruflo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from ruflo.cli import main; main()", *args],
        capture_output=True, text=True, timeout=120, check=False,
    )


def test_simulate_command_reports_and_exits_by_outcome(tmp_path: Path) -> None:
    (tmp_path / "repo").mkdir()
    path = write(tmp_path, VALID)
    done = ruflo("simulate", str(path), "--mode", "company", "--seed", "3")
    assert done.returncode == 0, done.stderr
    assert "makespan / LB" in done.stdout
    assert "delegations" in done.stdout
    shaped = ruflo("simulate", "mixed", "--tasks", "300", "--agents", "12", "--json",
                   "--kill-fraction", "0.3", "--timeline", str(tmp_path / "t.json"))
    assert shaped.returncode == 0, shaped.stderr
    import json

    data = json.loads(shaped.stdout)
    assert data["done"] == 300
    assert data["killed"] == 4
    assert data["ratio"] >= 1.0
    assert json.loads((tmp_path / "t.json").read_text())[0]["agent"].startswith("a")


def test_simulate_command_errors_are_one_clear_message(tmp_path: Path) -> None:
    bad = write(tmp_path, "name: x\ntasks:\n  - id: a\n    depends_on: [b]\n")
    result = ruflo("simulate", str(bad))
    assert result.returncode == 2
    assert "unknown task 'b'" in result.stderr
    assert "Traceback" not in result.stderr
    result = ruflo("simulate", "wide", "--mode", "anarchy")
    assert result.returncode == 2
    assert "unknown mode 'anarchy'" in result.stderr


def test_task_files_are_read_for_the_conflict_rule_and_bad_ones_refused(tmp_path: Path) -> None:
    loaded = parse_workload("name: x\ntasks:\n  - {id: a, files: [f.py, g.py]}\n"
                            "  - {id: b, files: f.py}\n  - {id: c}\n")
    assert loaded.files == {"a": ("f.py", "g.py"), "b": ("f.py",)}
    with pytest.raises(PolicyError, match=r"tasks\[0\] \('a'\).files"):
        parse_workload("name: x\ntasks:\n  - {id: a, files: {f.py: 1}}\n")
