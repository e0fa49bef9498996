"""Fixtures for the Terraform tests: the parsed module, its evaluator, the schema subset."""

from __future__ import annotations

import pytest

from tests.terraform.hcl_config import SCHEMA_PATH, TerraformConfig
from tests.terraform.hcl_eval import Evaluator
from tests.terraform.schema_check import Schemas

PROJECT_ID = "my-project"
"""The one variable without a default, for evaluating the module."""


@pytest.fixture(scope="session")
def config() -> TerraformConfig:
    return TerraformConfig.load()


@pytest.fixture(scope="session")
def evaluator(config: TerraformConfig) -> Evaluator:
    """The module's locals and variables with the defaults (and a project id)."""
    return Evaluator(config, {"project_id": PROJECT_ID})


@pytest.fixture(scope="session")
def schemas() -> Schemas:
    return Schemas.load(SCHEMA_PATH)
