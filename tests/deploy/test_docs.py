"""docs/deploy.md lists every variable ruflo reads, and the commands it shows name real files."""

from __future__ import annotations

import re

from deploy_files import NON_RUFLO_VARS, REPO, settings_env_names

DEPLOY_DOC = REPO / "docs" / "deploy.md"
DISTRIBUTED_DOC = REPO / "docs" / "distributed.md"


def test_deploy_doc_lists_every_variable_ruflo_reads() -> None:
    text = DEPLOY_DOC.read_text()
    missing = sorted(name for name in settings_env_names() if f"`{name}`" not in text)
    assert missing == []


def test_deploy_doc_names_the_other_variables_of_the_manifests() -> None:
    text = DEPLOY_DOC.read_text()
    assert sorted(name for name in NON_RUFLO_VARS if f"`{name}`" not in text) == []


def test_paths_in_the_docs_exist() -> None:
    for doc in (DEPLOY_DOC, DISTRIBUTED_DOC):
        for path in set(re.findall(r"(deploy/(?:docker|k8s|argocd)[A-Za-z0-9_./-]*)", doc.read_text())):
            path = path.rstrip(".")
            assert (REPO / path).exists(), f"{doc.name} names {path}, which does not exist"
