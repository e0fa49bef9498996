"""``refluxo reconcile``: on the local database, and with ``--url`` on a running server.

A stalled run is planted the way a lost delivery leaves one: the run stored an hour ago,
its delivery nowhere.
"""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from refluxo.api.client import ApiError, HttpClient
from refluxo.backends.sqlite.db import SqliteDatabase
from refluxo.backends.sqlite.store import SqliteStore
from refluxo.host.cli import main
from refluxo.host.embedded import EmbeddedRuntime
from refluxo.model import Snapshot, SnapshotStatus
from refluxo.runtime.ports import Payload, RunRecord
from tests.support.processes import stopped
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
KEY = "k" * 32
HOUR_MS = 3_600_000


def plant_stalled_run(path: Path, run_id: str, *, age_ms: int = HOUR_MS) -> None:
    """A run of the examples' ``loop``, created ``age_ms`` ago, with no delivery at all."""
    from refluxo.examples.app import app

    spec = app.get_workflow("loop")
    created = time.time_ns() // 1_000_000 - age_ms
    db = SqliteDatabase(path, synchronous="OFF")
    try:
        store = SqliteStore(db)  # no outbox: nothing records its first delivery
        store.put_definition(spec.version, spec.name, spec.wire)
        snapshot = Snapshot(
            workflow_id=run_id,
            status=SnapshotStatus.ACTIVE,
            current_node_id=spec.start,
            version=0,
            last_started_at=created,
            total_execution_time=0,
        )
        store.create_run(
            RunRecord(
                run_id=run_id,
                workflow=spec.name,
                definition_version=spec.version,
                snapshot=snapshot,
                created_at=created,
                updated_at=created,
                input={"items": [1, 2]},
                pending=Payload({"items": [1, 2]}),
            )
        )
    finally:
        db.close()


def pending_deliveries(path: Path) -> list[tuple[str, int]]:
    connection = sqlite3.connect(path)
    try:
        rows = connection.execute(
            "SELECT run_id, version FROM deliveries WHERE state = 'pending' ORDER BY run_id"
        ).fetchall()
    finally:
        connection.close()
    return [(run_id, version) for run_id, version in rows]


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(ROOT)
    path = tmp_path / "cli.db"
    monkeypatch.setenv("REFLUXO_DB", str(path))
    for name in ("REFLUXO_RECONCILE_GRACE_S", "REFLUXO_URL", "REFLUXO_API_KEY", "REFLUXO_JSON"):
        monkeypatch.delenv(name, raising=False)
    return path


def test_reconcile_schedules_a_stalled_run_on_the_local_database(db: Path) -> None:
    plant_stalled_run(db, "stalled-1")
    plant_stalled_run(db, "recent", age_ms=60_000)
    assert pending_deliveries(db) == []
    cli = CliRunner()

    result = cli.invoke(main, ["reconcile"])  # grace: 600 s by default
    assert result.exit_code == 0, result.output
    assert result.output == "1 overdue run examined, 1 scheduled again\n"
    assert pending_deliveries(db) == [("stalled-1", 0)]

    shorter = cli.invoke(main, ["reconcile", "--grace", "30", "--json"])
    assert shorter.exit_code == 0, shorter.output
    assert json.loads(shorter.output) == {"examined": 2, "rescheduled": 2, "nextCursor": None}
    assert pending_deliveries(db) == [("recent", 0), ("stalled-1", 0)]

    from refluxo.examples.app import app

    runtime = EmbeddedRuntime(app, db, workers=0, synchronous="OFF")
    try:
        runtime.scheduler.drain()
        assert runtime.service.get("stalled-1").status == "completed"
        assert runtime.service.get("recent").status == "completed"
    finally:
        runtime.stop()
    done = cli.invoke(main, ["reconcile", "--grace", "0"])
    assert done.output == "0 overdue runs examined, 0 scheduled again\n"


def test_reconcile_pages_with_its_limit_and_cursor(db: Path) -> None:
    for index in range(3):
        plant_stalled_run(db, f"stalled-{index}", age_ms=HOUR_MS - index)
    cli = CliRunner()
    first = cli.invoke(main, ["reconcile", "--limit", "2"])
    assert first.exit_code == 0, first.output
    match = re.fullmatch(
        r"2 overdue runs examined, 2 scheduled again; "
        r"more remain: refluxo reconcile --cursor (\S+)\n",
        first.output,
    )
    assert match, first.output
    rest = cli.invoke(main, ["reconcile", "--limit", "2", "--cursor", match.group(1), "--json"])
    assert json.loads(rest.output) == {"examined": 1, "rescheduled": 1, "nextCursor": None}
    assert pending_deliveries(db) == [(f"stalled-{i}", 0) for i in range(3)]


@pytest.mark.parametrize(
    ("arguments", "fragment"),
    [
        (["--grace", "-1"], "--grace"),
        (["--limit", "0"], "--limit"),
        (["--limit", "1001"], "--limit"),
        (["--cursor", "garbage"], "invalid cursor"),
    ],
)
def test_reconcile_refuses_bad_options_without_a_traceback(
    db: Path, arguments: list[str], fragment: str
) -> None:
    result = CliRunner().invoke(main, ["reconcile", *arguments])
    assert result.exit_code != 0
    assert fragment in result.output
    assert "Traceback" not in result.output


def test_every_reconcile_option_names_its_environment_variable(db: Path) -> None:
    result = CliRunner().invoke(main, ["reconcile", "--help"])
    for variable in (
        "REFLUXO_RECONCILE_GRACE_S",
        "REFLUXO_RECONCILE_LIMIT",
        "REFLUXO_RECONCILE_CURSOR",
        "REFLUXO_JSON",
        "REFLUXO_URL",
        "REFLUXO_API_KEY",
    ):
        assert variable in result.output, variable


# -- with --url: the server's route, with the API key -----------------------------------------


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """``refluxo serve --api-key`` on a database of its own; its URL and database."""
    import os

    path = tmp_path / "served.db"
    process = subprocess.Popen(
        [sys.executable, "-m", "refluxo.host.cli", "serve", "--port", "0", "--api-key", KEY],
        cwd=ROOT,
        env={**os.environ, "REFLUXO_DB": str(path), "REFLUXO_WORKERS": "2"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()  # printed once the socket is listening
        match = re.search(r"on (http://127\.0\.0\.1:\d+)", banner)
        assert match, banner
        yield match.group(1), path
    finally:
        stopped(process)


def test_reconcile_with_url_calls_the_servers_route_with_the_key(
    db: Path, server: tuple[str, Path]
) -> None:
    url, served_db = server
    plant_stalled_run(served_db, "stalled-remote")  # after the server started
    cli = CliRunner()

    refused = cli.invoke(main, ["reconcile", "--url", url])
    assert refused.exit_code != 0
    assert "401 unauthorized" in refused.output

    result = cli.invoke(main, ["reconcile", "--url", url, "--api-key", KEY, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"examined": 1, "rescheduled": 1, "nextCursor": None}

    client = HttpClient(url, api_key=KEY)
    wait_until(
        lambda: client.get("stalled-remote")["status"] == "completed", 30, "the reconciled run"
    )
    again = cli.invoke(main, ["reconcile", "--url", url, "--api-key", KEY, "--grace", "0"])
    assert again.output == "0 overdue runs examined, 0 scheduled again\n"
    with pytest.raises(ApiError) as bad:
        client.reconcile(limit=0)
    assert bad.value.status == 400
