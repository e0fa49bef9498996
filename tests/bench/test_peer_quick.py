"""The refluxo side of the peer benchmark (bench/peer.py) in its smoke size.

DBOS is never installed by the suite: only the refluxo side runs here, in process (the
benchmark runs the same function in a child process per measurement), and the table is
rendered from the rows it produced. Checks that the side completes, verifies its own result
and reports what the table needs; timing figures are not asserted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench import peer


def test_refluxo_sides_complete_check_every_step_and_fill_the_table(tmp_path: Path) -> None:
    workload = peer.QUICK_WORKLOADS[0]
    rows: dict[str, list[dict[str, Any]]] = {}
    for side, batch in peer.REFLUXO_SIDES.items():
        directory = tmp_path / str(batch)
        directory.mkdir()
        row = peer.measure_refluxo(directory, workload.runs, workload.length, batch)
        assert row["side"] == side
        assert row["steps"] == workload.runs * workload.length
        assert row["steps_per_s"] > 0
        assert row["cpu_us_per_step"] > 0
        rows[side] = [row]
    rendered = peer.table({workload.name: rows}, list(peer.REFLUXO_SIDES)).splitlines()
    assert len(rendered) == 3
    assert rendered[2].startswith(f"| {workload.name} | {workload.runs * workload.length} | **")
