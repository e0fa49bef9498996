"""main.py without cloud settings: the embedded default behind functions-framework."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from refluxo.api.client import HttpClient
from tests.support.emulators import start_functions_framework
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]


def test_main_serves_the_embedded_default_when_no_cloud_setting_exists(tmp_path: Path) -> None:
    env = {"REFLUXO_DB": str(tmp_path / "local.db"), "PYTHONPATH": str(ROOT)}
    for name in ("REFLUXO_BACKEND", "GOOGLE_CLOUD_PROJECT", "REFLUXO_TASKS_QUEUE"):
        env[name] = ""
    server = start_functions_framework(ROOT / "main.py", "api", env=env)
    try:
        client = HttpClient(server.url)
        run = client.start("loop", {"items": [1, 2]})
        wait_until(lambda: client.get(run["runId"])["status"] == "completed", 30, "the run")
        assert client.get(run["runId"])["resultCount"] == 7  # start, 3 x each, 2 x square, sum
    finally:
        server.stop()


def test_async_executors_await_real_io_behind_functions_framework(tmp_path: Path) -> None:
    env = {
        "REFLUXO_DB": str(tmp_path / "local.db"),
        "REFLUXO_APP": "tests.support.e2e_app:app",
        "PYTHONPATH": str(ROOT),
    }
    for name in ("REFLUXO_BACKEND", "GOOGLE_CLOUD_PROJECT", "REFLUXO_TASKS_QUEUE"):
        env[name] = ""
    server = start_functions_framework(ROOT / "main.py", "api", env=env)
    try:
        client = HttpClient(server.url)
        run = client.start("awaiting")
        wait_until(lambda: client.get(run["runId"])["status"] == "completed", 30, "the run")
        timeline = client.get(run["runId"])["timeline"]
        assert timeline[-1]["output"] == {"answer": 42, "slept": ["a", "b"]}
    finally:
        server.stop()


def test_a_misconfigured_deployment_fails_at_start_naming_what_is_missing() -> None:
    env = {**os.environ, "REFLUXO_BACKEND": "gcp", "GOOGLE_CLOUD_PROJECT": "acme"}
    env.pop("REFLUXO_REGION", None)
    result = subprocess.run(
        [sys.executable, "-c", "import main"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "ConfigurationError" in result.stderr
    assert "REFLUXO_REGION, REFLUXO_TASKS_QUEUE, REFLUXO_STEP_URL" in result.stderr
