"""A file that is not a readable database: every command says so in one line (exit 1),
and names what to do, instead of printing SQLite's traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from refluxo.backends.sqlite.errors import DatabaseUnreadable
from refluxo.host.cli import main
from refluxo.host.embedded import EmbeddedRuntime
from refluxo.host.options import load_app

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def damaged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(ROOT)
    path = tmp_path / "damaged.db"
    path.write_bytes(b"this is not a database" * 200)
    monkeypatch.setenv("REFLUXO_DB", str(path))
    return path


@pytest.mark.parametrize(
    "command",
    [["list"], ["status", "some-run"], ["run", "content-approval"], ["serve", "--port", "0"]],
)
def test_a_command_on_a_file_that_is_no_database_says_so_in_one_line(
    damaged: Path, command: list[str]
) -> None:
    result = CliRunner().invoke(main, command)
    assert result.exit_code == 1, result.output
    assert result.output == (
        f"Error: {damaged} cannot be read as a refluxo database (file is not a database): "
        "move it away to start afresh, or restore it from a backup\n"
    )


def test_a_library_runtime_on_it_raises_the_same_error(damaged: Path) -> None:
    with pytest.raises(DatabaseUnreadable, match="file is not a database"):
        EmbeddedRuntime(load_app(None), damaged)
    assert damaged.read_bytes() == b"this is not a database" * 200  # left as it was
