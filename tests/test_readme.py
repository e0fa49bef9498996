"""The README's code runs as written: the engine example, the install commands, the
two-file tutorial (here with the project's own install; from a wheel in a fresh virtual
environment in tests/newcomer)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.newcomer.tutorial import TEMPLATE, read_tutorial, write_files

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def test_the_engine_example_runs_and_prints_what_the_readme_promises() -> None:
    readme = (ROOT / "README.md").read_text()
    code = re.search(r"## The engine alone, in one file\n\n```python\n(.*?)```", readme, re.S)
    assert code is not None
    out = subprocess.run(
        [sys.executable, "-c", code.group(1)], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.splitlines() == ["paused", "completed Published: Hello, Ada"]


def test_the_readme_leads_with_what_it_is_then_install_tutorial_inspector_deploy() -> None:
    headings = re.findall(r"^## (.*)$", (ROOT / "README.md").read_text(), re.M)
    assert headings[:4] == [
        "Install",
        "Your own workflow, in two files",
        "Inspect it in the browser",
        "Deploy from your own repository",
    ]


def test_install_shows_the_two_make_commands_and_ci_runs_the_second() -> None:
    readme = (ROOT / "README.md").read_text()
    install = readme[readme.index("## Install\n") : readme.index("## Your own workflow")]
    blocks = re.findall(r"```sh\n(.*?)```", install, re.S)
    make = [b for b in blocks if "make demo" in b]
    assert len(make) == 1
    commands = [line.split("#")[0].strip() for line in make[0].splitlines() if line.strip()]
    assert commands == ["make demo", "make test"]
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    # Each way to install names the server extra, which brings the command.
    (pip,) = [b for b in blocks if "pip install" in b]
    assert pip.count("[server]") == 3


def test_the_tutorial_is_the_template_projects_app() -> None:
    tutorial = read_tutorial()
    assert set(tutorial.files) == {"order.json", "shop.py"}
    for name, body in tutorial.files.items():
        assert (TEMPLATE / name).read_text("utf-8") == body, name


def _refluxo_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REFLUXO_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def test_the_tutorial_runs_pauses_and_resumes_as_written(tmp_path: Path) -> None:
    tutorial = read_tutorial()
    write_files(tutorial, tmp_path)
    script = "set -e\n" + "\n".join(
        f"echo '>>> {index}'\n{line}" for index, line in enumerate(tutorial.commands)
    )
    done = subprocess.run(
        ["bash", "-c", script], cwd=tmp_path, env=_refluxo_env(), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    steps = re.split(r">>> \d+\n", done.stdout)[1:]
    ran, resumed = steps[-2], steps[-1]
    assert "paused at 'review'" in ran, ran
    assert "completed" in resumed, resumed
    assert '"shipped": "A-1"' in resumed, resumed
    assert (tmp_path / ".refluxo" / "refluxo.db").exists()


def test_a_mistyped_branch_in_the_tutorial_is_caught_by_validate(tmp_path: Path) -> None:
    tutorial = read_tutorial()
    write_files(tutorial, tmp_path)
    workflow = tmp_path / "order.json"
    workflow.write_text(
        workflow.read_text().replace('"sourceHandle": "yes"', '"sourceHandle": "yse"')
    )
    done = subprocess.run(
        ["refluxo", "validate", "order.json", "--app", "shop:app"],
        cwd=tmp_path,
        env=_refluxo_env(),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "did you mean 'yes'?" in done.stdout + done.stderr
