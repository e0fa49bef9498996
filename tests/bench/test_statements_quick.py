"""bench/statements.py in a small size: its floor still writes what a runtime step writes.

The figures of that script compare the runtime's statements with the floor's; they mean
something only while both append the same pages to the WAL per step, which this checks
(a change to what a step writes must change the floor too). Timings are not asserted.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import statements


def test_the_floor_appends_the_pages_a_runtime_step_appends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(statements, "STEPS", 300)
    timings = statements.Timings()
    _, cpu, rows, _ = statements.one_chain(tmp_path, statements.timing_connection(timings))
    assert cpu > 0
    per_step = timings.per_step(300)
    assert {"BEGIN", "COMMIT", "UPDATE runs SET", "INSERT INTO results"} <= set(per_step)
    frames = statements.wal_frames_per_step(tmp_path, rows)
    assert frames["floor"] == pytest.approx(frames["runtime"], rel=0.1)
