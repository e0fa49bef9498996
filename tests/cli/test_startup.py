"""The quick commands import only what they use.

``refluxo --help`` and ``--version`` need click and the command's options, not Flask, the
cloud clients, the engine, the expression parser or pydantic; ``refluxo status`` on the
embedded default needs the runtime but no web framework and no cloud library. Each command
runs in a fresh interpreter that reports the modules it loaded (structural, not timed:
bench/cli_startup.py measures the time).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import pytest

import refluxo
import refluxo.runtime
from refluxo.api import models
from refluxo.backends.sqlite.db import DEFAULT_PATH
from refluxo.host import cli, settings

ROOT = Path(__file__).resolve().parents[2]

WEB_AND_CLOUD = ("flask", "werkzeug", "functions_framework", "google.cloud.", "google.auth")
"""Never imported by these commands. (``google`` and ``google.cloud`` themselves are empty
namespace packages that an installed ``-nspkg.pth`` file creates at interpreter start.)"""

ENGINE = (
    "lark",
    "pydantic",
    "jsonschema",
    "refluxo.engine",
    "refluxo.expressions",
    "refluxo.model",
    "refluxo.runtime.app",
    "refluxo.api.models",
    "refluxo.api.openapi",
    "refluxo.api.http",
)
"""Not imported by ``--help`` and ``--version`` either."""

REPORT = textwrap.dedent(
    """
    import json, sys
    from refluxo.host.cli import main
    try:
        main(sys.argv[1:], prog_name="refluxo")
    except SystemExit as exit:
        code = exit.code
    print(json.dumps({"exit": code, "modules": sorted(sys.modules)}), file=sys.stderr)
    """
)


def loaded_by(*args: str, cwd: Path = ROOT) -> tuple[int, list[str], str]:
    """Run ``refluxo ARGS`` in a fresh interpreter: its exit code, modules and output."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("REFLUXO_")}
    done = subprocess.run(
        [sys.executable, "-c", REPORT, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    report = json.loads(done.stderr.strip().splitlines()[-1])
    return report["exit"], report["modules"], done.stdout + done.stderr


def among(modules: list[str], prefixes: tuple[str, ...]) -> list[str]:
    """The modules under any of ``prefixes`` (a prefix ending with a dot: strictly under)."""

    def under(name: str, prefix: str) -> bool:
        if prefix.endswith("."):
            return name.startswith(prefix)
        return name == prefix or name.startswith(prefix + ".")

    return [name for name in modules if any(under(name, prefix) for prefix in prefixes)]


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["status", "--help"]])
def test_help_and_version_import_no_web_cloud_or_engine(args: list[str]) -> None:
    code, modules, output = loaded_by(*args)
    assert code == 0, output
    assert "importlib.metadata" not in modules  # the version is not read from the metadata
    assert among(modules, WEB_AND_CLOUD) == []
    assert among(modules, ENGINE) == []


def test_status_on_the_embedded_default_imports_no_web_or_cloud_library(
    tmp_path: Path,
) -> None:
    code, modules, output = loaded_by("status", "no-such-run", "--db", str(tmp_path / "r.db"))
    assert code == 1, output
    assert "no run 'no-such-run'" in output
    assert "refluxo.backends.sqlite.store" in modules  # it did open the database
    assert among(modules, WEB_AND_CLOUD) == []
    assert "refluxo.api.server" not in modules


def test_the_command_s_copies_of_limits_and_defaults_match_their_sources() -> None:
    assert refluxo.__version__ == importlib.metadata.version("refluxo")  # --version prints it
    assert cli.MAX_GRACE_S == models.MAX_GRACE_S
    assert cli.MAX_RECONCILE_LIMIT == models.MAX_RECONCILE_LIMIT
    assert settings.DEFAULT_DATABASE == DEFAULT_PATH


@pytest.mark.parametrize("package", [refluxo, refluxo.runtime])
def test_lazy_exports_resolve_to_their_definitions(package: ModuleType) -> None:
    exports: dict[str, str] = package._EXPORTS
    assert set(exports) | ({"__version__"} & set(package.__all__)) == set(package.__all__)
    for name, module in exports.items():
        assert getattr(package, name) is getattr(importlib.import_module(module), name)
    assert set(package.__all__) <= set(dir(package))
    with pytest.raises(AttributeError):
        getattr(package, "not_exported")  # noqa: B009


def test_importing_the_packages_loads_none_of_their_exports() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, refluxo, refluxo.runtime; "
            "print(sorted(m for m in sys.modules if m.startswith(('refluxo', 'pydantic'))))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == "['refluxo', 'refluxo.runtime']"
