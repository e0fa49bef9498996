"""examples/template: a project of one's own deployed with ``terraform/`` as a module. Its
source archive, computed as Terraform computes it, holds main.py, requirements.txt and the
app, nothing else; unpacked alone, its main.py serves the app."""

from __future__ import annotations

import json
import subprocess
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

import hcl2
import pytest
from packaging.requirements import Requirement

from refluxo.api.client import HttpClient
from tests.support.emulators import start_functions_framework
from tests.support.waiting import wait_until
from tests.terraform.conftest import PROJECT_ID
from tests.terraform.hcl_config import OPTIONS, ROOT, TERRAFORM_DIR, TerraformConfig
from tests.terraform.hcl_eval import Evaluator

TEMPLATE = ROOT / "examples" / "template"
DEPLOY = TEMPLATE / "deploy"


@pytest.fixture(scope="module")
def module_call() -> dict[str, Any]:
    with (DEPLOY / "main.tf").open(encoding="utf-8") as handle:
        document = hcl2.load(handle, serialization_options=OPTIONS)
    (entry,) = document["module"]
    (call,) = entry.values()
    assert isinstance(call, dict)
    return call


def _arguments(call: dict[str, Any]) -> dict[str, Any]:
    """The module's inputs, with ``path.root`` as Terraform resolves it from deploy/."""
    values = {k: v for k, v in call.items() if k != "source" and not k.startswith("__")}
    values["source_dir"] = values["source_dir"].replace("${path.root}", str(DEPLOY))
    values["project_id"] = PROJECT_ID
    values["region"] = "europe-west1"
    values.pop("api_invoker_members")
    return values


def test_the_template_calls_the_repositorys_module_with_known_inputs(
    module_call: dict[str, Any], config: TerraformConfig
) -> None:
    assert (DEPLOY / module_call["source"]).resolve() == TERRAFORM_DIR
    unknown = set(module_call) - {"source"} - set(config.variables)
    assert {name for name in unknown if not name.startswith("__")} == set()
    assert module_call["app"] == "shop:app"
    assert module_call["source_dir"] == "${path.root}/.."


def _archive(module_call: dict[str, Any], config: TerraformConfig, target: Path) -> list[str]:
    """Build the zip from the files Terraform would put in it; returns their names."""
    evaluator = Evaluator(config, _arguments(module_call))
    for name in ("app", "app_source_patterns", "source_dir"):
        assert evaluator.validation_errors(name) == [], name
    files = evaluator.local("source_files")
    assert isinstance(files, list)
    source_dir = Path(evaluator.local("source_dir"))
    with zipfile.ZipFile(target, "w") as archive:
        for name in files:
            archive.writestr(name, (source_dir / name).read_text("utf-8"))
    return files


def test_the_archive_holds_main_requirements_and_the_app_only(
    module_call: dict[str, Any], config: TerraformConfig, tmp_path: Path
) -> None:
    files = _archive(module_call, config, tmp_path / "source.zip")
    assert files == ["main.py", "order.json", "requirements.txt", "shop.py"]
    lines = (TEMPLATE / "requirements.txt").read_text().splitlines()
    (requirement,) = [Requirement(x) for x in lines if x.strip() and not x.startswith("#")]
    assert requirement.name == "refluxo"
    assert requirement.extras == {"gcp"}
    assert requirement.specifier.contains("0.1.0")


def test_the_unpacked_archive_serves_the_app_from_main_py(
    module_call: dict[str, Any], config: TerraformConfig, tmp_path: Path
) -> None:
    _archive(module_call, config, tmp_path / "source.zip")
    unpacked = tmp_path / "workspace"
    with zipfile.ZipFile(tmp_path / "source.zip") as archive:
        archive.extractall(unpacked)
    env = {
        "REFLUXO_APP": module_call["app"],
        "REFLUXO_DB": str(tmp_path / "local.db"),
        "REFLUXO_BACKEND": "",
        "GOOGLE_CLOUD_PROJECT": "",
        "REFLUXO_TASKS_QUEUE": "",
        "REFLUXO_API_KEY": "",
        "PYTHONPATH": "",
    }
    with start_functions_framework(unpacked / "main.py", "api", env=env, timeout=120) as server:
        client = HttpClient(server.url)
        with urllib.request.urlopen(f"{server.url}/workflows", timeout=10) as answer:
            listed = json.load(answer)
        assert [w["name"] for w in listed["workflows"]] == ["order"]  # the app, not the examples
        run = client.start("order", {"id": "Z-9"})["runId"]
        wait_until(lambda: client.get(run)["status"] == "paused", 60, "the run to pause")
        client.resume(run, {"ok": True})
        wait_until(lambda: client.get(run)["status"] == "completed", 60, "the run to end")
        assert client.get(run)["timeline"][-1]["output"] == {"shipped": "Z-9"}


def test_the_template_terraform_is_formatted() -> None:
    terraform = ROOT / ".venv" / "bin" / "terraform"
    result = subprocess.run(
        [str(terraform), "fmt", "-check", "-diff", str(DEPLOY)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
