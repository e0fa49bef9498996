"""Runtime benchmark on the embedded default (SQLite WAL, synchronous=FULL).

Usage: python bench/runtime.py [--quick] [--rounds N]

Measures, in one process:

1. the durable-commit floor: what one step writes, with nothing around it. One thread,
   the runtime's own schema and pragmas, and per step one ``BEGIN IMMEDIATE``, the step's
   result row, the head update (checked against its version), the delivery bookkeeping
   (the next delivery recorded, the current one marked done, under the runtime's own
   hashed delivery names, so that they land where the runtime's do) and ``COMMIT``; the
   rows are the ones the runtime itself writes (copied from a run of it);
2. committed steps per second on the embedded default (its default worker count), for
   three workloads: 8 concurrent chains, 1 chain, and 200 runs of 5 steps. Only the starts
   go through the HTTP API (``POST /runs`` on the local server, sent one after the other by
   a client in another process, so that the server's work counts and the client's does
   not); every step is delivered by the local scheduler. Each round measures the floor and
   then every workload, and each workload's ratio is taken to the floor of its own round;
   the table reports medians, and the process's CPU time per step (less sensitive than
   wall time to a shared machine);
3. per step, on one chain with the statements traced (a separate run, not timed): SQL
   statements, write transactions and deliveries recorded;
4. per-step cost at history 100 vs 10,000 (a loop with 1 KB outputs), which must be flat.
"""

from __future__ import annotations

import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.workloads import chain_app
from refluxo import StepResult
from refluxo.api.http import HttpApi
from refluxo.api.server import LocalServer
from refluxo.backends.sqlite.db import OVERDUE_INDEX, SCHEMA, SqliteDatabase
from refluxo.host.embedded import EmbeddedRuntime
from refluxo.host.settings import DEFAULT_WORKERS
from refluxo.runtime import App, StepBudget
from refluxo.runtime.ids import delivery_name
from tests.support.sqlite_trace import trace_statements


class Rows:
    """A step's rows as the runtime writes them: a head and a result (their JSON text)."""

    def __init__(self, head: str, result: str) -> None:
        self.head = head
        self.result = result


def floor_rate(
    directory: Path,
    rows: Rows,
    seconds: float,
    *,
    factory: type[sqlite3.Connection] = sqlite3.Connection,
    between: Callable[[], None] | None = None,
    max_steps: int | None = None,
) -> tuple[float, float]:
    """Steps per second writing only what a step writes, one transaction per step, and
    the process's CPU µs per step.

    ``factory`` is the connection's class (``bench/statements.py`` times statements with
    it); ``between``, if given, runs before each step's transaction (that script touches
    memory there, as a runtime's Python does between its commits); ``max_steps`` stops
    after that many steps if ``seconds`` have not passed yet.
    """
    path = directory / f"floor-{time.monotonic_ns()}.db"
    connection = sqlite3.connect(path, isolation_level=None, factory=factory)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    connection.executescript(SCHEMA)
    connection.execute(OVERDUE_INDEX)
    connection.execute(
        "INSERT INTO runs (run_id, workflow, definition_version, status, version, head, "
        "input, pending, result_count, created_at, updated_at, due_at) "
        "VALUES ('floor', 'chain', 'v', 'active', 0, ?, NULL, NULL, 0, 0, 0, 0)",
        (rows.head,),
    )
    connection.execute(
        "INSERT INTO deliveries (name, run_id, version, due_at, hop, available_at, state, "
        "attempts, updated_at) VALUES (?, 'floor', 0, 0, 0, 0, 'pending', 0, 0)",
        (delivery_name("floor", 0),),
    )
    step = 0
    started = time.perf_counter()
    cpu = time.process_time()
    while time.perf_counter() - started < seconds and step != max_steps:
        if between is not None:
            between()
        now = time.time_ns() // 1_000_000
        connection.execute("BEGIN IMMEDIATE")
        connection.execute(
            "INSERT INTO results (run_id, seq, node_id, node_index, result) "
            "VALUES ('floor', ?, ?, 0, ?)",
            (step, f"n{step}", rows.result),
        )
        connection.execute(
            "UPDATE runs SET version = ?, head = ?, result_count = result_count + 1, "
            "updated_at = ?, due_at = ? WHERE run_id = 'floor' AND version = ?",
            (step + 1, rows.head, now, now, step),
        )
        connection.execute(
            "INSERT INTO deliveries (name, run_id, version, due_at, hop, available_at, state, "
            "attempts, updated_at) VALUES (?, 'floor', ?, 0, 0, 0, 'pending', 0, ?)",
            (delivery_name("floor", step + 1), step + 1, now),
        )
        connection.execute(
            "UPDATE deliveries SET state = 'done', updated_at = ? WHERE name = ?",
            (now, delivery_name("floor", step)),
        )
        connection.execute("COMMIT")
        step += 1
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu
    connection.close()
    path.unlink()
    return step / elapsed, cpu / step * 1e6


class Counters:
    """Counts SQL statements and write transactions on a runtime's database."""

    def __init__(self, db: SqliteDatabase) -> None:
        self.statements = 0
        self.writes = 0
        lock = threading.Lock()
        write = db.write

        def traced(_: str) -> None:
            with lock:
                self.statements += 1

        def counted_write() -> Any:
            with lock:
                self.writes += 1
            return write()

        trace_statements(db, traced)
        db.write = counted_write  # type: ignore[method-assign]


def wait_completed(path: Path, runs: int, timeout: float = 300.0) -> None:
    """Poll (on a connection of its own) until ``runs`` runs have completed."""
    connection = sqlite3.connect(path, isolation_level=None)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            row = connection.execute(
                "SELECT count(*) FROM runs WHERE status = 'completed'"
            ).fetchone()
            if row[0] >= runs:
                return
            time.sleep(0.002)
    finally:
        connection.close()
    raise TimeoutError(f"{runs} runs did not complete in {timeout} s")


_CLIENT = """
import sys
from refluxo.api.client import HttpClient
client = HttpClient(sys.argv[1])
sys.stdout.write("ready\\n"); sys.stdout.flush()
sys.stdin.readline()
for k in range(int(sys.argv[2])):
    client.start("chain", {"k": k})
"""


class StartingClient:
    """The HTTP client that starts the runs, in a process of its own (as a real caller
    is): the server's work for each ``POST /runs`` counts in the runtime's time and CPU, the
    client's does not. Started before the clock; :meth:`go` releases its requests."""

    def __init__(self, url: str, runs: int) -> None:
        root = str(Path(__file__).resolve().parent.parent)
        self._process = subprocess.Popen(
            [sys.executable, "-c", _CLIENT, url, str(runs)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": root},
        )
        assert self._process.stdout is not None
        if self._process.stdout.readline().strip() != "ready":
            raise RuntimeError("the starting client did not come up")

    def go(self) -> None:
        assert self._process.stdin is not None
        self._process.stdin.write("go\n")
        self._process.stdin.flush()

    def close(self) -> None:
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait(10)
        if self._process.returncode not in (0, -9):
            raise RuntimeError(f"the starting client failed ({self._process.returncode})")


def workload(
    directory: Path,
    name: str,
    *,
    runs: int,
    length: int,
    batch: int = 1,
    trace: bool = False,
) -> dict[str, Any]:
    """Start ``runs`` chains of ``length`` quick nodes over HTTP; time until all complete."""
    app = chain_app(length)
    path = directory / f"{name}-{time.monotonic_ns()}.db"
    runtime = EmbeddedRuntime(
        app, path, workers=DEFAULT_WORKERS, budget=StepBudget(max_steps=batch)
    )
    counters = Counters(runtime.db) if trace else None
    runtime.start()
    server = LocalServer(HttpApi(runtime.service)).start()
    client = StartingClient(server.url, runs)
    try:
        started = time.perf_counter()
        cpu = time.process_time()
        client.go()
        wait_completed(path, runs)
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu
        connection = runtime.db.connection()
        steps = connection.execute("SELECT sum(result_count) FROM runs").fetchone()[0]
        deliveries = connection.execute("SELECT count(*) FROM deliveries").fetchone()[0]
        head, result = connection.execute(
            "SELECT head, (SELECT result FROM results LIMIT 1) FROM runs LIMIT 1"
        ).fetchone()
    finally:
        client.close()
        server.stop()
        runtime.stop()
    assert steps == runs * length, (steps, runs * length)
    row: dict[str, Any] = {
        "workload": name,
        "runs": runs,
        "nodes_per_run": length,
        "batch": batch,
        "steps": steps,
        "seconds": round(elapsed, 3),
        "steps_per_s": round(steps / elapsed, 1),
        "cpu_us_per_step": round(cpu / steps * 1e6, 1),
        "deliveries_per_step": round(deliveries / steps, 3),
        "rows": Rows(head, result),
    }
    if counters is not None:
        # The starts (HTTP, definition, first delivery) are counted too, spread over steps.
        row["statements_per_step"] = round(counters.statements / steps, 2)
        row["write_transactions_per_step"] = round(counters.writes / steps, 3)
    return row


def history_cost(directory: Path, *, iterations: int, output_bytes: int) -> dict[str, Any]:
    """Per-delivery time at the start of a long run and near its end."""
    app = App(transform_engines=[])
    blob = "x" * output_bytes

    @app.node()
    def iterate(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        index = len(context.get("it", []))
        if index < data["count"]:
            return StepResult({"index": index, "blob": blob}, next_handle="loop")
        return StepResult({"done": index}, next_handle="done")

    @app.node()
    def body(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        return StepResult({"blob": blob, "seen": context["it"][-1].output["index"]})

    @app.node()
    def finish(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        return StepResult({"bodies": len(context["body"])})

    app.workflow(
        "loop",
        {
            "start": "it",
            "nodes": [
                {"id": "it", "type": "iterate", "data": {"count": iterations}},
                {"id": "body", "type": "body"},
                {"id": "end", "type": "finish"},
            ],
            "edges": [
                {"source": "it", "target": "body", "sourceHandle": "loop"},
                {"source": "body", "target": "it"},
                {"source": "it", "target": "end", "sourceHandle": "done"},
            ],
        },
    )
    runtime = EmbeddedRuntime(app, directory / "history.db", workers=0)
    durations: list[float] = []
    try:
        run_id = runtime.service.start("loop").record.run_id
        while True:
            started = time.perf_counter()
            if not runtime.scheduler.drain(limit=1):
                break
            durations.append(time.perf_counter() - started)
        record = runtime.store.load_run(run_id)
        assert record is not None
        assert record.status == "completed", record
        steps = record.result_count
    finally:
        runtime.stop()
    assert steps == 2 * iterations + 2
    early = statistics.median(durations[100:200]) * 1e6
    late = statistics.median(durations[-100:]) * 1e6
    return {
        "steps": steps,
        "output_bytes": output_bytes,
        "us_per_step_at_100": round(early, 1),
        "us_per_step_at_end": round(late, 1),
        "ratio": round(late / early, 3),
    }


WORKLOADS = {
    # name: (runs, nodes per run), full size and --quick
    "8 chains": ((8, 250), (8, 100)),
    "1 chain": ((1, 1000), (1, 300)),
    "200 runs x 5": ((200, 5), (100, 5)),
}


def main() -> None:
    quick = "--quick" in sys.argv
    rounds = int(sys.argv[sys.argv.index("--rounds") + 1]) if "--rounds" in sys.argv else 3
    floor_seconds = 1.0 if quick else 2.0
    with tempfile.TemporaryDirectory(dir=os.environ.get("REFLUXO_BENCH_DIR")) as scratch:
        directory = Path(scratch)
        traced = workload(directory, "traced", runs=1, length=300 if quick else 1000, trace=True)
        rows: Rows = traced.pop("rows")
        print(json.dumps(traced), flush=True)
        floors: list[float] = []
        floor_cpu: list[float] = []
        measured: dict[str, list[dict[str, Any]]] = {name: [] for name in WORKLOADS}
        for index in range(rounds):
            floor, cpu = floor_rate(directory, rows, floor_seconds)
            floors.append(floor)
            floor_cpu.append(cpu)
            print(
                json.dumps(
                    {
                        "round": index,
                        "floor_steps_per_s": round(floor, 1),
                        "floor_cpu_us_per_step": round(cpu, 1),
                    }
                ),
                flush=True,
            )
            for name, sizes in WORKLOADS.items():
                runs, length = sizes[1] if quick else sizes[0]
                row = workload(directory, name.replace(" ", ""), runs=runs, length=length)
                row.pop("rows")
                row["workload"] = name
                row["round"] = index
                row["ratio_to_floor"] = round(row["steps_per_s"] / floor, 3)
                measured[name].append(row)
                print(json.dumps(row), flush=True)
        history = history_cost(directory, iterations=500 if quick else 5000, output_bytes=1024)
        print(json.dumps(history), flush=True)

    print(f"\n{rounds} rounds, {DEFAULT_WORKERS} workers, medians\n")
    print("| workload | steps | steps/s | ratio to the floor (per round) | CPU µs/step |")
    print("|---|---:|---:|---:|---:|")
    print(
        f"| floor (one thread, bare SQLite) | | {statistics.median(floors):.0f} | 1 "
        f"| {statistics.median(floor_cpu):.0f} |"
    )
    for name, results in measured.items():
        rate = statistics.median(r["steps_per_s"] for r in results)
        ratio = statistics.median(r["ratio_to_floor"] for r in results)
        each = ", ".join(f"{r['ratio_to_floor']:.2f}" for r in results)
        cpu_each = statistics.median(r["cpu_us_per_step"] for r in results)
        print(
            f"| {name} | {results[0]['steps']} | {rate:.0f} | **{ratio:.2f}x** ({each}) "
            f"| {cpu_each:.0f} |"
        )
    print("\n| per step (1 chain, traced) | value |\n|---|---:|")
    print(f"| SQL statements | {traced['statements_per_step']} |")
    print(f"| write transactions | {traced['write_transactions_per_step']} |")
    print(f"| deliveries recorded | {traced['deliveries_per_step']} |")
    print(f"| µs at history 100 | {history['us_per_step_at_100']} |")
    print(f"| µs at history {history['steps']} | {history['us_per_step_at_end']} |")
    print(f"| ratio (end / 100) | {history['ratio']} |")


if __name__ == "__main__":
    main()
