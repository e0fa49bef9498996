"""A newcomer's first steps, scripted: build refluxo's wheel, install it in a fresh virtual
environment, run the demo, write the README's two-file app in a new folder, run it and
resume it with the ``refluxo`` command, serve it, and see and resume runs in the run
inspector in headless Chromium. Nothing of the checkout is importable there: the app
lives in its own folder and refluxo comes from the wheel (its dependencies from pip's
cache or the index)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from tests.browser.chromium import launch
from tests.newcomer.tutorial import ROOT, environment_of, read_tutorial, write_files
from tests.support.processes import stopped

pytestmark = pytest.mark.timeout(600)


def _run(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{command}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def build_wheel(scratch: Path) -> Path:
    """The wheel ``pip wheel`` builds from a copy of the project's sources (the checkout
    gets no build directory)."""
    source = scratch / "source"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".*")
    shutil.copytree(ROOT / "refluxo", source / "refluxo", ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    dist = scratch / "dist"
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "-w",
            str(dist),
            str(source),
        ],
        scratch,
    )
    (wheel,) = dist.glob("refluxo-*.whl")
    return wheel


def fresh_environment(scratch: Path, wheel: Path) -> Path:
    """A new virtual environment with the wheel and its server extra; returns its bin/."""
    venv = scratch / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], scratch)
    python = venv / "bin" / "python"
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--quiet",
            f"{wheel}[server]",
        ],
        scratch,
    )
    return venv / "bin"


def user_environment(bin_dir: Path, **extra: str) -> dict[str, str]:
    """A shell as a user has it: the new environment's commands first, no project paths."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("REFLUXO_", "PYTHON", "VIRTUAL_ENV"))
    }
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    return {**env, **extra}


@contextmanager
def serving(command: str, cwd: Path, env: dict[str, str]) -> Iterator[str]:
    """Run the tutorial's serve command (on a free port) until the block ends; its URL."""
    process = subprocess.Popen(
        [*command.split(), "--port", "0"],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()  # printed once the socket is listening
        match = re.search(r"on (http://[\w.:\[\]]+:\d+)", banner)
        assert match, banner
        yield match.group(1)
    finally:
        stopped(process)


def see_runs(page: Page, url: str) -> None:
    """Open the inspector; both tutorial runs are listed, the resumed one completed."""
    page.goto(f"{url}/ui")
    expect(page.get_by_role("heading", name="Runs")).to_be_visible()
    expect(page.locator("table.runs tbody tr")).to_have_count(2)
    expect(page.locator('tr[data-run="order-1"] .status')).to_have_text("completed")
    expect(page.locator('tr[data-run="order-2"] .status')).to_have_text("paused")

    page.goto(f"{url}/ui#/runs/order-1")
    expect(page.get_by_role("heading", name="Run order-1")).to_be_visible()
    expect(page.locator(".status").first).to_have_text("completed")
    for node_id, state in (("review", "done"), ("ship", "done"), ("refuse", "idle")):
        graph_node = page.locator(f'svg.graph [data-node="{node_id}"]')
        expect(graph_node).to_have_attribute("data-state", state)
    timeline = page.locator('table.timeline tr[data-node="ship"]')
    expect(timeline).to_contain_text('"shipped": "A-1"')

    # The second order waits at review: refused from the page.
    page.goto(f"{url}/ui#/runs/order-2")
    expect(page.get_by_role("heading", name="Run order-2")).to_be_visible()
    review = page.locator('svg.graph [data-node="review"]')
    expect(review).to_have_attribute("data-state", "paused")
    page.get_by_label("Resume node review with this JSON payload").fill('{"ok": false}')
    page.get_by_role("button", name="Resume", exact=True).click()
    expect(page.locator(".status").first).to_have_text("completed")
    expect(page.locator('svg.graph [data-node="refuse"]')).to_have_attribute("data-state", "done")
    expect(page.locator('svg.graph [data-node="ship"]')).to_have_attribute("data-state", "idle")


def test_a_newcomer_installs_the_wheel_writes_an_app_runs_resumes_and_inspects_it(
    tmp_path: Path,
) -> None:
    bin_dir = fresh_environment(tmp_path, build_wheel(tmp_path))
    empty = tmp_path / "empty"
    empty.mkdir()
    env = user_environment(bin_dir)
    where = _run(
        [str(bin_dir / "python"), "-c", "import refluxo; print(refluxo.__file__)"], empty, env
    )
    assert Path(where.strip()).is_relative_to(tmp_path / "venv"), where

    # The examples ship in the wheel: the demo runs from an empty folder.
    demo = _run(["refluxo", "demo", "--port", "0"], empty, env)
    assert "completed" in demo, demo

    # The README's tutorial, as written, in a folder of its own.
    tutorial = read_tutorial()
    project = tmp_path / "shop"
    write_files(tutorial, project)
    script = "set -e\n" + "\n".join(tutorial.commands)
    output = _run(["bash", "-c", script], project, env)
    assert "paused at 'review'" in output, output
    assert '"shipped": "A-1"' in output, output
    assert "completed" in output.split("paused at 'review'")[-1], output

    app_env = user_environment(bin_dir, **environment_of(tutorial.commands))
    second = _run(
        ["refluxo", "run", "order", "--input", '{"id": "B-2"}', "--run-id", "order-2"],
        project,
        app_env,
    )
    assert "paused at 'review'" in second, second
    hint = next(line for line in second.splitlines() if "resume it with: " in line)
    again = _run(["bash", "-c", hint.split("resume it with: ", 1)[1]], project, app_env)
    assert "paused at 'review'" in again, again  # the printed hint, pasted: asked again

    with serving(tutorial.serve, project, app_env) as url, sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            see_runs(browser.new_page(viewport={"width": 1280, "height": 900}), url)
        finally:
            browser.close()
