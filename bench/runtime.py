"""Runtime benchmark on the embedded default (SQLite WAL, synchronous=FULL).

Usage: python bench/runtime.py [--quick]

Measures, in one process and one run:
1. the raw durable-commit rate of the same SQLite configuration (one small row per
   transaction), the ceiling for anything that commits every step;
2. committed steps per second end to end: runs started through the HTTP API (local server),
   chains of quick nodes, several concurrent runs, delivered by the local scheduler, with
   one step per delivery (default) and with a batch budget; reported as a ratio of (1);
3. store writes and scheduled deliveries per node, both ways;
4. per-step cost at history 100 vs 10,000 (a loop with 1 KB outputs), which must be flat.
"""

from __future__ import annotations

import json
import os
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.workloads import chain_app
from refluxo import StepResult
from refluxo.api.client import HttpClient
from refluxo.api.http import HttpApi
from refluxo.api.server import LocalServer
from refluxo.host.embedded import EmbeddedRuntime
from refluxo.runtime import App, StepBudget


def raw_commit_rate(directory: Path, seconds: float = 2.0) -> float:
    """Commits per second: one ~200-byte row per BEGIN IMMEDIATE/COMMIT, WAL + FULL."""
    path = directory / "raw.db"
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    connection.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    row = "x" * 200
    count = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("INSERT INTO t (v) VALUES (?)", (row,))
        connection.execute("COMMIT")
        count += 1
    elapsed = time.perf_counter() - started
    connection.close()
    return count / elapsed


class WriteCounter:
    """Counts write transactions on the runtime's database."""

    def __init__(self, runtime: EmbeddedRuntime) -> None:
        self.count = 0
        original = runtime.db.write
        lock = threading.Lock()

        def counted() -> Any:
            with lock:
                self.count += 1
            return original()

        runtime.db.write = counted  # type: ignore[method-assign]


def end_to_end(
    directory: Path, *, runs: int, length: int, workers: int, batch: int
) -> dict[str, Any]:
    """Start ``runs`` chains of ``length`` quick nodes over HTTP; time until all complete."""
    app = chain_app(length)
    runtime = EmbeddedRuntime(
        app, directory / f"e2e-{batch}.db", workers=workers, budget=StepBudget(max_steps=batch)
    )
    counter = WriteCounter(runtime)
    runtime.start()
    server = LocalServer(HttpApi(runtime.service)).start()
    client = HttpClient(server.url)
    try:
        started = time.perf_counter()
        ids = [client.start("chain", {"k": k})["runId"] for k in range(runs)]
        done = threading.Event()

        def all_completed() -> bool:
            return all(client.get(i, timeline_limit=0)["status"] == "completed" for i in ids)

        while not done.is_set():
            if runtime.scheduler.wait_idle(timeout=120) and all_completed():
                done.set()
        elapsed = time.perf_counter() - started
        writes = counter.count
        deliveries = (
            runtime.db.connection().execute("SELECT count(*) FROM deliveries").fetchone()[0]
        )
        steps = sum(client.get(i, timeline_limit=0)["resultCount"] for i in ids)
    finally:
        server.stop()
        runtime.stop()
    assert steps == runs * length, (steps, runs * length)
    return {
        "runs": runs,
        "nodes_per_run": length,
        "workers": workers,
        "batch": batch,
        "steps": steps,
        "seconds": round(elapsed, 3),
        "steps_per_s": round(steps / elapsed, 1),
        "writes_per_node": round(writes / steps, 3),
        "deliveries_per_node": round(deliveries / steps, 3),
    }


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


def main() -> None:
    quick = "--quick" in sys.argv
    with tempfile.TemporaryDirectory(dir=os.environ.get("REFLUXO_BENCH_DIR")) as scratch:
        directory = Path(scratch)
        raw = raw_commit_rate(directory)
        print(json.dumps({"raw_commits_per_s": round(raw, 1)}), flush=True)
        runs, length = (4, 50) if quick else (8, 250)
        results = []
        for batch in (1, 10):
            row = end_to_end(directory, runs=runs, length=length, workers=4, batch=batch)
            row["ratio_to_raw"] = round(row["steps_per_s"] / raw, 3)
            results.append(row)
            print(json.dumps(row), flush=True)
        history = history_cost(directory, iterations=500 if quick else 5000, output_bytes=1024)
        print(json.dumps(history), flush=True)

    print("\n| measure | value |\n|---|---:|")
    print(f"| raw durable commits/s (WAL, synchronous=FULL) | {raw:.0f} |")
    for row in results:
        print(
            f"| HTTP end to end, batch {row['batch']}: steps/s | {row['steps_per_s']:.0f} "
            f"({row['ratio_to_raw']:.0%} of raw) |"
        )
        print(f"| batch {row['batch']}: store writes / node | {row['writes_per_node']} |")
        print(f"| batch {row['batch']}: deliveries / node | {row['deliveries_per_node']} |")
    print(f"| per-step µs at history 100 | {history['us_per_step_at_100']} |")
    print(f"| per-step µs at history {history['steps']} | {history['us_per_step_at_end']} |")
    print(f"| ratio (end / 100) | {history['ratio']} |")


if __name__ == "__main__":
    main()
