"""The quick commands import only what they use.

``refluxo --help`` and ``--version`` need click and the command's options, not Flask, the
cloud clients, the engine, the expression parser or pydantic; ``refluxo status`` on the
embedded default reads the stored run and needs none of these either, nor the app, nor the
runtime that steps runs. Each command runs in a fresh interpreter that reports the modules
it loaded (structural, not timed: bench/cli_startup.py measures the time).
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
from click.testing import CliRunner

import refluxo
import refluxo.runtime
from refluxo.api import models
from refluxo.backends.sqlite.db import DEFAULT_PATH
from refluxo.host import cli, settings
from refluxo.host.options import Target

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
"""Not imported by ``--help``, ``--version`` and ``status`` either."""

SERVING = ("refluxo.api.hosts", "refluxo.api.auth", "refluxo.api.server", "refluxo.host.logs")
"""What ``refluxo serve`` needs and no quick command imports (the settings parse a
``Host`` only when hosts are configured)."""

RUNNING = (
    "refluxo.examples",
    "refluxo.runtime.dispatcher",
    "refluxo.runtime.service",
    "refluxo.runtime.records",
    "refluxo.backends.sqlite.store",
    "refluxo.backends.sqlite.scheduler",
    "refluxo.host.compose",
    "refluxo.host.embedded",
    "refluxo.host.settings",
    "refluxo.api.client",
)
"""What running workflows needs (the app, ``examples``, and the settings among it) and
showing a stored run does not: ``status`` on the embedded default imports none of it, nor
do ``--help`` and ``--version``."""

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
    assert among(modules, WEB_AND_CLOUD + ENGINE + SERVING + RUNNING) == []


def test_status_of_an_unknown_run_reads_the_database_and_nothing_else(tmp_path: Path) -> None:
    code, modules, output = loaded_by("status", "no-such-run", "--db", str(tmp_path / "r.db"))
    assert code == 1, output
    assert "Error: 404 run_not_found: no run 'no-such-run'" in output
    assert "refluxo.backends.sqlite.reader" in modules  # it did open the database
    assert among(modules, WEB_AND_CLOUD + ENGINE + SERVING + RUNNING) == []


def test_status_of_a_stored_run_prints_the_api_view_without_loading_the_app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)  # a run of the default app, refluxo.examples.app
    db = tmp_path / "r.db"
    started = CliRunner().invoke(
        cli.main, ["run", "content-approval", "--run-id", "post-1", "--db", str(db)]
    )
    assert "paused at 'review'" in started.output, started.output
    target = Target(settings.DEFAULT_APP, db, url=None, api_key=None, id_token=None)
    with target.client(deliver=False) as client:  # the runtime's LocalClient and its models
        expected = json.dumps(client.get("post-1", timeline_limit=1000), indent=2)

    code, modules, output = loaded_by("status", "post-1", "--db", str(db), "--json")

    assert code == 0, output
    assert output.startswith(expected + "\n")
    assert among(modules, WEB_AND_CLOUD + ENGINE + SERVING + RUNNING) == []

    code, modules, output = loaded_by("status", "post-1", "--db", str(db))  # the summary

    assert code == 0, output
    assert "status    paused at 'review': waiting for a resume" in output
    assert among(modules, WEB_AND_CLOUD + ENGINE + SERVING + RUNNING) == []


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
    # refluxo._lazy: the few lines that import an export on first use.
    assert done.stdout.strip() == "['refluxo', 'refluxo._lazy', 'refluxo.runtime']"
