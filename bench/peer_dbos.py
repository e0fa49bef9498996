"""The DBOS Transact side of ``bench/peer.py``: one measurement, one JSON line.

Usage (inside ``.venv-dbos``, which ``bench/peer.py`` creates): ``python bench/peer_dbos.py
RUNS LENGTH DIRECTORY``

The same work as refluxo's ``chain`` workflow: a workflow whose ``LENGTH`` steps are each a
``@DBOS.step()`` function returning ``{"i": k}``. DBOS runs with its defaults except for
its system database, a SQLite file in ``DIRECTORY`` (``system_database_url``). Launching
DBOS (its migrations) is not timed; the clock starts before the first
``DBOS.start_workflow`` and stops when every handle's ``get_result()`` has returned. The
process's CPU time over the same span (DBOS's background threads included) is reported
too. Before answering, the result is checked: every workflow ``SUCCESS`` with the expected
return value, and ``RUNS * LENGTH`` step outputs recorded in the system database.

It imports nothing from refluxo: it runs where only DBOS is installed.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

# Not installed in the project's environment, where mypy reads this file.
from dbos import DBOS  # type: ignore[import-not-found,unused-ignore]


def _quick(k: int) -> dict[str, int]:
    """The node's work: a small dict, as refluxo's quick node returns."""
    return {"i": k}


# Decorators applied as calls: in the project's environment DBOS is untyped.
quick: Callable[[int], dict[str, int]] = DBOS.step(name="quick")(_quick)


def _chain(length: int) -> int:
    """``length`` steps one after another; the return value proves they all ran."""
    done = 0
    for k in range(length):
        done += quick(k)["i"] == k
    return done


chain: Callable[[int], int] = DBOS.workflow(name="chain")(_chain)


def measure(runs: int, length: int, directory: Path) -> dict[str, Any]:
    """Start ``runs`` chains of ``length`` steps, wait for all of them, check them."""
    database = directory / "dbos.sqlite"
    DBOS(config={"name": "peer", "system_database_url": f"sqlite:///{database}"})
    DBOS.launch()
    try:
        started = time.perf_counter()
        cpu = time.process_time()
        handles = [DBOS.start_workflow(chain, length) for _ in range(runs)]
        results = [handle.get_result() for handle in handles]
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu
        statuses = [handle.get_status().status for handle in handles]
    finally:
        DBOS.destroy()
    assert results == [length] * runs, results
    assert statuses == ["SUCCESS"] * runs, statuses
    connection = sqlite3.connect(database)
    try:
        recorded = connection.execute(
            "SELECT count(*) FROM operation_outputs WHERE function_name = 'quick'"
        ).fetchone()[0]
        workflows = connection.execute(
            "SELECT count(*) FROM workflow_status WHERE status = 'SUCCESS'"
        ).fetchone()[0]
        journal = connection.execute("PRAGMA journal_mode").fetchone()[0]
        synchronous = connection.execute("PRAGMA synchronous").fetchone()[0]
    finally:
        connection.close()
    steps = runs * length
    assert recorded == steps, (recorded, steps)
    assert workflows == runs, (workflows, runs)
    return {
        "side": "DBOS",
        "version": version("dbos"),
        "runs": runs,
        "length": length,
        "steps": steps,
        "seconds": elapsed,
        "steps_per_s": steps / elapsed,
        "cpu_us_per_step": cpu / steps * 1e6,
        "journal_mode": journal,
        "synchronous": synchronous,
    }


def main() -> None:
    runs, length, directory = int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
    print(json.dumps(measure(runs, length, directory)), flush=True)


if __name__ == "__main__":
    main()
