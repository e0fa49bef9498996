"""Where one chain's step goes: the runtime's SQL statement by statement, against the floor.

Usage: python bench/statements.py [--rounds N]

``bench/runtime.py`` compares whole steps with the durable-commit floor. This script
explains the gap on one chain (one step per delivery, 2,000 steps), in one process, rounds
interleaved:

1. **runtime**: the embedded default, each of its SQL statements timed (the connections
   are opened with a connection class whose ``execute`` reads the clock around SQLite's),
   and the process's CPU time per step;
2. **floor**: ``bench.runtime.floor_rate`` with the same timing connection (the same rows,
   schema and pragmas as the runtime's, one thread, nothing between transactions);
3. **floor, memory touched**: the same, with 1 MiB of memory written between its
   transactions (one byte in every 64), as a step's Python touches memory between the
   runtime's commits: how much of the gap is the caches' doing and not SQLite's.

Then, separately and untimed, both sides once more with automatic checkpoints off, to count
the WAL frames (pages) each step appends: the runtime and the floor write the same pages.

The timing connection adds the same small cost to every statement on every side.
"""

from __future__ import annotations

import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.runtime import Rows, floor_rate, wait_completed
from bench.workloads import chain_app
from refluxo.backends.sqlite.db import SqliteDatabase
from refluxo.host.embedded import EmbeddedRuntime
from refluxo.runtime import StepBudget

STEPS = 2000
TOUCHED_BYTES = 1024 * 1024
WAL_FRAME_BYTES = 4096 + 24


class Timings:
    """Seconds spent in each kind of statement, and how many ran."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    def add(self, sql: str, seconds: float) -> None:
        words = sql.split()
        kind = " ".join(words[:3]) if words[0] in ("INSERT", "UPDATE") else words[0]
        self.seconds[kind] += seconds
        self.calls[kind] += 1

    def per_step(self, steps: int) -> dict[str, float]:
        """µs per step of each kind that ran at least once a step, and their sum."""
        kinds = {k: s / steps * 1e6 for k, s in self.seconds.items() if self.calls[k] >= steps}
        kinds["all SQL"] = sum(kinds.values())
        return kinds


def timing_connection(timings: Timings) -> type[sqlite3.Connection]:
    class TimedConnection(sqlite3.Connection):
        def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
            started = time.perf_counter()
            try:
                return super().execute(sql, parameters)
            finally:
                timings.add(sql, time.perf_counter() - started)

        def executemany(self, sql: str, parameters: Any, /) -> sqlite3.Cursor:
            started = time.perf_counter()
            try:
                return super().executemany(sql, parameters)
            finally:
                timings.add(sql, time.perf_counter() - started)

    return TimedConnection


def open_with(db: SqliteDatabase, factory: type[sqlite3.Connection], *pragmas: str) -> None:
    """From now on, ``db`` opens its connections as ``factory`` (its own pragmas kept)."""

    def connect() -> sqlite3.Connection:
        connection = sqlite3.connect(
            db.path,
            isolation_level=None,
            check_same_thread=False,
            timeout=db.timeout,
            factory=factory,
        )
        for pragma in (
            "journal_mode=WAL",
            f"synchronous={db.synchronous}",
            f"busy_timeout={int(db.timeout * 1000)}",
            *pragmas,
        ):
            connection.execute(f"PRAGMA {pragma}")
        return connection

    db.close()
    db._connect = connect  # type: ignore[method-assign]


def one_chain(
    directory: Path, factory: type[sqlite3.Connection], *pragmas: str
) -> tuple[float, float, Rows, int]:
    """Run one chain of :data:`STEPS` steps: wall and CPU µs per step, its rows, and the
    size of its WAL at the end (before the runtime stops: the last connection closing
    checkpoints it away)."""
    path = directory / f"chain-{time.monotonic_ns()}.db"
    runtime = EmbeddedRuntime(chain_app(STEPS), path, budget=StepBudget(max_steps=1))
    open_with(runtime.db, factory, *pragmas)
    runtime.start()
    try:
        started, cpu = time.perf_counter(), time.process_time()
        runtime.service.start("chain", {"k": 0})
        wait_completed(path, 1)
        wall = (time.perf_counter() - started) / STEPS * 1e6
        cpu = (time.process_time() - cpu) / STEPS * 1e6
        head, result = (
            runtime.db.connection()
            .execute("SELECT head, (SELECT result FROM results LIMIT 1) FROM runs LIMIT 1")
            .fetchone()
        )
        wal_bytes = os.path.getsize(f"{path}-wal")
    finally:
        runtime.stop()
    return wall, cpu, Rows(head, result), wal_bytes


def touch_memory() -> Callable[[], None]:
    block = bytearray(TOUCHED_BYTES)

    def touch() -> None:
        block[::64] = block[1::64]  # reads and writes one byte in every 64

    return touch


def wal_frames_per_step(directory: Path, rows: Rows) -> dict[str, float]:
    """Pages appended to the WAL per step, checkpoints off, on both sides, over the same
    number of steps (a step's pages grow with the tables)."""

    class NoCheckpoint(sqlite3.Connection):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.execute("PRAGMA wal_autocheckpoint=0")

    _, _, _, wal_bytes = one_chain(directory, NoCheckpoint, "wal_autocheckpoint=0")
    runtime_frames = wal_bytes / WAL_FRAME_BYTES / STEPS
    sizes: list[int] = []

    class Measured(NoCheckpoint):
        def close(self) -> None:
            for name in self.execute("PRAGMA database_list"):
                sizes.append(os.path.getsize(f"{name[2]}-wal"))
            super().close()

    floor_rate(directory, rows, float("inf"), factory=Measured, max_steps=STEPS)
    return {"runtime": runtime_frames, "floor": sizes[0] / WAL_FRAME_BYTES / STEPS}


def main() -> None:
    rounds = int(sys.argv[sys.argv.index("--rounds") + 1]) if "--rounds" in sys.argv else 3
    sides: dict[str, list[dict[str, float]]] = defaultdict(list)
    with tempfile.TemporaryDirectory(dir=os.environ.get("REFLUXO_BENCH_DIR")) as scratch:
        directory = Path(scratch)
        for index in range(rounds):
            timings = Timings()
            wall, cpu, rows, _ = one_chain(directory, timing_connection(timings))
            sides["runtime"].append({"µs per step": wall, "CPU µs": cpu, **timings.per_step(STEPS)})
            for name, between in (("floor", None), ("floor, memory touched", touch_memory())):
                timings = Timings()
                rate, cpu = floor_rate(
                    directory, rows, 2.0, factory=timing_connection(timings), between=between
                )
                steps = round(timings.calls["COMMIT"])
                sides[name].append({"µs per step": 1e6 / rate, "CPU µs": cpu})
                sides[name][-1].update(timings.per_step(steps))
            print(json.dumps({"round": index, **{k: v[-1] for k, v in sides.items()}}), flush=True)
        frames = wal_frames_per_step(directory, rows)
    kinds = sorted({k for rows_ in sides.values() for row in rows_ for k in row})
    print(f"\n{rounds} rounds, one chain of {STEPS} steps, medians (µs per step)\n")
    print("| | " + " | ".join(sides) + " |")
    print("|---|" + "---:|" * len(sides))
    for kind in kinds:
        cells = [
            f"{statistics.median(row.get(kind, 0.0) for row in rows_):.1f}"
            for rows_ in sides.values()
        ]
        print(f"| {kind} | " + " | ".join(cells) + " |")
    print(f"\nWAL frames per step: runtime {frames['runtime']:.2f}, floor {frames['floor']:.2f}")


if __name__ == "__main__":
    main()
