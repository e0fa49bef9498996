"""The functions' source archive: an allow-list, whose exact file list is computed here as
Terraform computes it (``fileset()`` over the patterns, minus the excluded names)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.terraform.conftest import PROJECT_ID
from tests.terraform.hcl_config import ROOT, TerraformConfig, single
from tests.terraform.hcl_eval import Evaluator, fileset

FORBIDDEN = re.compile(
    r"(^|/)(\.env|\.git|\.venv[^/]*|\.terraform|tests|bench|terraform|scripts)(/|$)"
    r"|\.(tfvars|tfstate|pem|key|p12|pyc)$|__pycache__"
)


def archived(config: TerraformConfig, source_dir: Path, **variables: object) -> list[str]:
    """The files the archive would hold for ``source_dir`` and the given variables."""
    evaluator = Evaluator(
        config, {"project_id": PROJECT_ID, "source_dir": str(source_dir), **variables}
    )
    for name in ("app_source_patterns", "source_dir"):
        assert evaluator.validation_errors(name) == [], name
    files = evaluator.local("source_files")
    assert isinstance(files, list)
    return files


def test_the_archive_is_built_from_the_allow_list_only(config: TerraformConfig) -> None:
    archive = config.data["archive_file"]["source"]
    assert archive["type"] == "zip"
    assert archive["output_path"].startswith("${path.module}/.terraform/")  # git-ignored
    # No directory is zipped (so no deny-list to get wrong): one `source` block per file.
    for argument in ("source_dir", "source_file", "source_content", "excludes"):
        assert argument not in archive, argument
    (dynamic,) = archive["dynamic"]
    block = dynamic["source"]
    assert block["for_each"] == "${local.source_files}"
    assert single(block, "content") == {
        "filename": "${source.value}",
        "content": '${file("${local.source_dir}/${source.value}")}',
    }
    assert config.locals["source_dir"] == '${coalesce(var.source_dir, "${path.module}/..")}'
    assert config.variables["source_dir"]["default"] is None


def _walk(root: Path, top: str) -> set[str]:
    found: set[str] = set()
    for directory, dirs, files in os.walk(root / top):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d != "__pycache__"]
        for name in files:
            if not name.startswith(".") and not name.endswith((".pyc", ".pyo")):
                found.add((Path(directory) / name).relative_to(root).as_posix())
    return found


def test_the_repository_archive_holds_exactly_the_code(config: TerraformConfig) -> None:
    files = archived(config, ROOT)
    expected = {"main.py", "requirements.txt"} | _walk(ROOT, "refluxo")
    assert set(files) == expected
    assert files == sorted(files), "the archive lists its files in name order"
    for needed in ("main.py", "requirements.txt", "refluxo/__init__.py"):
        assert needed in files
    # The default app ships in the package, its workflows as package data.
    assert {"refluxo/examples/app.py", "refluxo/examples/content_approval.json"} <= set(files)
    assert "refluxo/expressions/grammar.lark" in files  # not only Python files
    assert [f for f in files if FORBIDDEN.search(f)] == []


def _touch(root: Path, relative: str, text: str = "x = 1\n") -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


DECOYS = (
    ".env",
    "service-account-key.json",
    "key.pem",
    "terraform.tfvars",
    "prod.auto.tfvars.json",
    "terraform/terraform.tfstate",
    "terraform/terraform.tfstate.backup",
    ".venv/lib/site.py",
    ".venv-checkov/bin/checkov",
    ".git/config",
    "tests/test_app.py",
    "bench/run.py",
    "scripts/deploy.py",
    "pyproject.toml",
    "refluxo/.env",
    "refluxo/__pycache__/engine.cpython-311.pyc",
    "refluxo/secrets/server.key",
    "refluxo/certs/client.p12",
    "refluxo/.mypy_cache/cache.json",
    "examples/.env.local",
    "examples/__pycache__/app.cpython-311.pyc",
    "examples/local.tfvars",
    "examples/app.py",  # not the App's: the default app_source_patterns are empty
    "examples/template/main.py",
)
KEPT = (
    "main.py",
    "requirements.txt",
    "refluxo/__init__.py",
    "refluxo/py.typed",
    "refluxo/expressions/grammar.lark",
    "refluxo/runtime/deep/module.py",
    "refluxo/examples/app.py",
    "refluxo/examples/flows/loop.json",
)


def test_nothing_but_the_allowed_files_reaches_the_archive(
    config: TerraformConfig, tmp_path: Path
) -> None:
    for relative in (*DECOYS, *KEPT):
        _touch(tmp_path, relative)
    assert archived(config, tmp_path) == sorted(KEPT)


def test_the_apps_own_files_come_from_app_source_patterns(
    config: TerraformConfig, tmp_path: Path
) -> None:
    for relative in (
        "main.py",
        "requirements.txt",
        "refluxo/__init__.py",
        "myapp/__init__.py",
        "myapp/flows.py",
        "myapp/.env",
        "workflows/a.json",
        "workflows/nested/b.json",
        "workflows/notes.txt",
        "examples/app.py",
    ):
        _touch(tmp_path, relative)
    files = archived(config, tmp_path, app_source_patterns=["myapp/**", "workflows/*.json"])
    assert files == [
        "main.py",
        "myapp/__init__.py",
        "myapp/flows.py",
        "refluxo/__init__.py",
        "requirements.txt",
        "workflows/a.json",
    ]


@pytest.mark.parametrize(
    ("patterns", "accepted"),
    [
        (["examples/**"], True),
        (["myapp/**", "workflows/*.json", "app.py"], True),
        (["**"], False),
        (["*"], False),
        (["*.py"], False),
        ([".env"], False),
        (["/etc/passwd"], False),
        (["../secrets/**"], False),
        (["myapp/../../x"], False),
        (["{a,b}/**"], False),
    ],
)
def test_app_source_patterns_must_name_where_they_start(
    config: TerraformConfig, patterns: list[str], accepted: bool
) -> None:
    evaluator = Evaluator(config, {"project_id": PROJECT_ID, "app_source_patterns": patterns})
    assert (evaluator.validation_errors("app_source_patterns") == []) is accepted


def test_fileset_emulation_follows_terraforms_pattern_rules(tmp_path: Path) -> None:
    for relative in ("a.py", "d/b.py", "d/e/c.py", "d/e/c.txt", "x/.h"):
        _touch(tmp_path, relative)
    assert fileset(str(tmp_path), "*.py") == ["a.py"]
    assert fileset(str(tmp_path), "d/*.py") == ["d/b.py"]
    assert fileset(str(tmp_path), "d/**") == ["d/b.py", "d/e/c.py", "d/e/c.txt"]
    assert fileset(str(tmp_path), "d/**/*.py") == ["d/b.py", "d/e/c.py"]
    assert fileset(str(tmp_path), "x/*") == ["x/.h"]  # * matches a leading dot
    assert fileset(str(tmp_path), "missing/**") == []
