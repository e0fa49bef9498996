"""A file that is not a readable database: every command says so in one line (exit 1),
and names what to do, instead of printing SQLite's traceback."""

from __future__ import annotations

import sqlite3
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


def database_with_runs(path: Path) -> None:
    runtime = EmbeddedRuntime(load_app(None), path, workers=0)
    try:
        for index in range(60):
            runtime.service.start("content-approval", {"title": "t" * 500}, run_id=f"r{index}")
    finally:
        runtime.stop()


def test_a_damaged_page_found_by_a_command_is_one_error_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    path = tmp_path / "paged.db"
    database_with_runs(path)
    data = bytearray(path.read_bytes())
    for page in range(1, len(data) // 4096):  # every page but the first (the schema)
        data[page * 4096 + 8 : page * 4096 + 3008] = b"\xa5" * 3000
    path.write_bytes(bytes(data))
    monkeypatch.setenv("REFLUXO_DB", str(path))
    result = CliRunner().invoke(main, ["list"])
    assert result.exit_code == 1, result.output
    assert result.output.startswith("Error: the local database cannot be read (")
    assert result.output.endswith("restore it from a backup, or move it away to start afresh\n")


def written_by_another(path: Path, *statements: str) -> None:
    """A SQLite file made by other code (another version, another application)."""
    connection = sqlite3.connect(path)
    for statement in statements:
        connection.execute(statement)
    connection.commit()
    connection.close()


def test_a_database_of_a_later_schema_is_refused_not_misread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    path = tmp_path / "later.db"
    written_by_another(
        path, "CREATE TABLE runs (id INTEGER PRIMARY KEY, other TEXT)", "PRAGMA user_version = 999"
    )
    monkeypatch.setenv("REFLUXO_DB", str(path))
    before = path.read_bytes()
    for command in (["list"], ["run", "content-approval"]):
        result = CliRunner().invoke(main, command)
        assert result.exit_code == 1, result.output
        assert "was written by a later version of refluxo (schema 999; this one knows" in (
            result.output
        )
    with pytest.raises(DatabaseUnreadable, match="schema 999"):
        EmbeddedRuntime(load_app(None), path)
    assert path.read_bytes() == before  # not even switched to WAL mode
    assert not path.with_name("later.db-wal").exists()


def test_another_applications_database_is_refused_not_modified(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    path = tmp_path / "theirs.db"
    written_by_another(path, "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    before = path.read_bytes()
    monkeypatch.setenv("REFLUXO_DB", str(path))
    result = CliRunner().invoke(main, ["list"])
    assert result.exit_code == 1, result.output
    assert "is another application's database (it has tables, none of refluxo's)" in (result.output)
    assert path.read_bytes() == before


def test_a_database_sqlite_cannot_open_is_one_error_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv(
        "REFLUXO_DB", str(tmp_path / ("c" * 250 + ".db"))
    )  # its journal's name is too long
    result = CliRunner().invoke(main, ["list"])
    assert result.exit_code == 1, result.output
    assert result.output.startswith("Error: ")
    assert "SQLITE_CANTOPEN" in result.output
    assert "Traceback" not in result.output
