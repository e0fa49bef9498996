"""What the command-line tests share."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """A runner in the repository's root with no app, ``--no-app`` or ``--json`` from the
    environment: commands use their defaults (the examples' app). A module may define its
    own ``cli``."""
    monkeypatch.chdir(ROOT)
    for name in ("REFLUXO_APP", "REFLUXO_NO_APP", "REFLUXO_JSON"):
        monkeypatch.delenv(name, raising=False)
    return CliRunner()
