"""Fixtures for the Terraform tests: the parsed module and the provider schema subset."""

from __future__ import annotations

import pytest

from tests.terraform.hcl_config import SCHEMA_PATH, TerraformConfig
from tests.terraform.schema_check import Schemas


@pytest.fixture(scope="session")
def config() -> TerraformConfig:
    return TerraformConfig.load()


@pytest.fixture(scope="session")
def schemas() -> Schemas:
    return Schemas.load(SCHEMA_PATH)
