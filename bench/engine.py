"""Engine benchmark: per-step cost as a run's history grows.

Usage:
    python bench/engine.py WORKLOAD N     one JSON line for one workload
    python bench/engine.py all [REPEATS]  every recorded configuration, each in its own
                                          process (so peak RSS is its own), as a table;
                                          with REPEATS, interleaved rounds and the medians
    python bench/engine.py codec          per call: model_validate_json, model_dump_json,
                                          Snapshot.from_json and to_json at 1,000 and 5,000
                                          results

Workloads (see bench/README.md): chain, loop, expr, stepwise (the whole snapshot through
Snapshot.to_json / Snapshot.from_json between steps), stepwise-model (the same through
model_dump_json / model_validate_json). Only execution is timed; every result is checked
before it is reported.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import json
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from refluxo import Snapshot, StepResult, WorkflowEngine
from refluxo.expressions import JexlTransformEngine

RECORDED = [
    ("chain", 1000),
    ("chain", 10000),
    ("loop", 1000),
    ("loop", 20000),
    ("expr", 1000),
    ("stepwise", 1000),
    ("stepwise", 5000),
    ("stepwise-model", 1000),
]


def _step(data: Any, context: Any, payload: Any, globals: Any) -> dict[str, Any]:
    return {"data": {"i": data["i"]}}


def _chain_workflow(n: int, data: Callable[[int], Any]) -> dict[str, Any]:
    return {
        "nodes": [{"id": f"n{k}", "type": "step", "data": data(k)} for k in range(n)],
        "edges": [{"source": f"n{k - 1}", "target": f"n{k}"} for k in range(1, n)],
    }


def chain(n: int) -> tuple[Callable[[], Coroutine[Any, Any, Snapshot]], Callable[[Snapshot], int]]:
    engine = WorkflowEngine(_chain_workflow(n, lambda k: {"i": k}), {"step": {"executor": _step}})

    def check(final: Snapshot) -> int:
        assert final.status == "completed", final.status
        assert final.context[f"n{n - 1}"][0].output == {"i": n - 1}
        return n

    return lambda: engine.execute(initial_node_id="n0", step_limit=n + 10), check


def loop(n: int) -> tuple[Callable[[], Coroutine[Any, Any, Snapshot]], Callable[[Snapshot], int]]:
    def iterator(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        index = len(context.get("it", []))
        items = data["items"]
        if index < len(items):
            return StepResult(
                {"currentItem": items[index], "currentIndex": index}, next_handle="loop"
            )
        return StepResult({"totalItems": len(items)}, next_handle="done")

    def echo(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        return StepResult(data)

    workflow = {
        "nodes": [
            {"id": "it", "type": "iterator", "data": {"items": [k % 100 for k in range(n)]}},
            {"id": "body", "type": "echo", "data": {"tag": "body"}},
            {"id": "end", "type": "echo", "data": {"tag": "end"}},
        ],
        "edges": [
            {"source": "it", "target": "body", "sourceHandle": "loop"},
            {"source": "body", "target": "it"},
            {"source": "it", "target": "end", "sourceHandle": "done"},
        ],
    }
    engine = WorkflowEngine(
        workflow, {"iterator": {"executor": iterator}, "echo": {"executor": echo}}
    )

    def check(final: Snapshot) -> int:
        assert final.status == "completed", final.status
        assert final.context["it"][-1].output == {"totalItems": n}
        assert len(final.context["body"]) == n
        return 2 * n + 2

    return lambda: engine.execute(initial_node_id="it", step_limit=2 * n + 100), check


def expr(n: int) -> tuple[Callable[[], Coroutine[Any, Any, Snapshot]], Callable[[Snapshot], int]]:
    def data(k: int) -> Any:
        if k == 0:
            return {"x": 0}
        return {
            "x": f"{{{{ nodes.n{k - 1}.last.data.x + 1 }}}}",
            "label": f"node {{{{ nodes.n{k - 1}.last.data.x }}}}",
        }

    def echo(data: Any, context: Any, payload: Any, globals: Any) -> dict[str, Any]:
        return {"data": data}

    engine = WorkflowEngine(
        _chain_workflow(n, data),
        {"step": {"executor": echo}},
        transform_engines=[JexlTransformEngine()],
    )

    def check(final: Snapshot) -> int:
        assert final.status == "completed", final.status
        last = final.context[f"n{n - 1}"][0].output
        assert last["x"] == n - 1, last
        assert last["label"] == f"node {n - 2}", last
        return n

    return lambda: engine.execute(initial_node_id="n0", step_limit=n + 10), check


def stepwise(
    n: int, *, codec: bool = True
) -> tuple[Callable[[], Coroutine[Any, Any, Snapshot]], Callable[[Snapshot], int]]:
    """The chain driven by ``execute_step``, the whole snapshot through JSON between steps.

    ``codec``: with ``Snapshot.to_json`` / ``Snapshot.from_json`` (what bench/README.md
    recommends); else ``model_dump_json`` / ``model_validate_json`` (``stepwise-model``).
    """
    engine = WorkflowEngine(_chain_workflow(n, lambda k: {"i": k}), {"step": {"executor": _step}})

    async def run() -> Snapshot:
        snapshot = engine.create_initial_snapshot("bench", "n0")
        if codec:
            for _ in range(n):
                stored = snapshot.to_json()
                snapshot = await engine.execute_step(Snapshot.from_json(stored))
        else:
            for _ in range(n):
                text = snapshot.model_dump_json()
                snapshot = await engine.execute_step(Snapshot.model_validate_json(text))
        return snapshot

    def check(final: Snapshot) -> int:
        assert final.status == "completed", final.status
        assert len(final.context) == n
        return n

    return run, check


def stepwise_model(
    n: int,
) -> tuple[Callable[[], Coroutine[Any, Any, Snapshot]], Callable[[Snapshot], int]]:
    return stepwise(n, codec=False)


WORKLOADS = {
    "chain": chain,
    "loop": loop,
    "expr": expr,
    "stepwise": stepwise,
    "stepwise-model": stepwise_model,
}


def measure(workload: str, n: int) -> dict[str, Any]:
    run, check = WORKLOADS[workload](n)
    # What a long-lived host does once its workflows are loaded (bench/README.md): the
    # collector's full passes then skip the engine and the workflow it holds.
    gc.freeze()
    started, cpu_started = time.perf_counter(), time.process_time()
    final = asyncio.run(run())
    seconds = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu_started
    steps = check(final)
    return {
        "engine": "refluxo-py",
        "workload": workload,
        "n": n,
        "seconds": round(seconds, 4),
        "steps": steps,
        "us_per_step": round(seconds / steps * 1e6, 2),
        # CPU time of this process: less disturbed than wall time by other processes.
        "cpu_us_per_step": round(cpu_seconds / steps * 1e6, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


async def _steps(engine: WorkflowEngine, snapshot: Snapshot, count: int) -> Snapshot:
    for _ in range(count):
        snapshot = await engine.execute_step(snapshot)
    return snapshot


def codec(sizes: tuple[int, ...] = (1000, 5000), repeats: int = 30) -> None:
    """Per call, the median over ``repeats`` of each way to read and write the snapshot of
    the stepwise chain after N results: one JSON line per N."""
    for n in sizes:
        engine = WorkflowEngine(
            _chain_workflow(n + 1, lambda k: {"i": k}), {"step": {"executor": _step}}
        )

        snapshot = asyncio.run(_steps(engine, engine.create_initial_snapshot("bench", "n0"), n))
        text, data = snapshot.model_dump_json(), snapshot.to_json()
        stepped = asyncio.run(_steps(engine, Snapshot.from_json(data), 1))
        calls: dict[str, Callable[[], object]] = {
            "model_validate_json": functools.partial(Snapshot.model_validate_json, text),
            "model_dump_json": snapshot.model_dump_json,
            "from_json": functools.partial(Snapshot.from_json, data),
            "to_json_after_a_step": stepped.to_json,
        }
        row: dict[str, Any] = {"results": n, "json_bytes": len(data)}
        for name, call in calls.items():
            times = []
            for _ in range(repeats):
                started = time.perf_counter()
                call()
                times.append(time.perf_counter() - started)
            row[f"{name}_us"] = round(sorted(times)[len(times) // 2] * 1e6, 1)
        print(json.dumps(row), flush=True)


def run_all(repeats: int = 1) -> None:
    """Every recorded configuration, each run ``repeats`` times (rounds interleaved, each
    in its own process); the table shows each configuration's median round."""
    runs: dict[tuple[str, int], list[dict[str, Any]]] = {key: [] for key in RECORDED}
    for _ in range(repeats):
        for workload, n in RECORDED:
            out = subprocess.run(
                [sys.executable, __file__, workload, str(n)],
                check=True,
                capture_output=True,
                text=True,
            )
            row = json.loads(out.stdout)
            runs[(workload, n)].append(row)
            print(json.dumps(row), flush=True)
    rows = [
        sorted(found, key=lambda r: r["us_per_step"])[len(found) // 2] for found in runs.values()
    ]
    by_key = {(r["workload"], r["n"]): r for r in rows}
    print("\n| workload | N | steps | seconds | µs/step | CPU µs/step | peak RSS MB |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['workload']} | {r['n']} | {r['steps']} | {r['seconds']} | {r['us_per_step']} "
            f"| {r['cpu_us_per_step']} | {r['peak_rss_mb']} |"
        )
    for workload, small, large in (
        ("chain", 1000, 10000),
        ("loop", 1000, 20000),
        ("stepwise", 1000, 5000),
    ):
        ratio = by_key[(workload, large)]["us_per_step"] / by_key[(workload, small)]["us_per_step"]
        print(f"\n{workload}: µs/step at N={large} / N={small} = {ratio:.2f}", end="")
        if repeats > 1:
            pairs = zip(runs[(workload, large)], runs[(workload, small)], strict=True)
            each = [
                f"{big['us_per_step'] / little['us_per_step']:.2f}"
                f" (CPU {big['cpu_us_per_step'] / little['cpu_us_per_step']:.2f})"
                for big, little in pairs
            ]
            print(f"; per round: {', '.join(each)}", end="")
    print()


def main(argv: list[str]) -> None:
    if argv == ["codec"]:
        codec()
        return
    if argv[:1] == ["all"] and (len(argv) == 1 or (len(argv) == 2 and argv[1].isdigit())):
        run_all(int(argv[1]) if len(argv) == 2 else 1)
        return
    if len(argv) != 2 or argv[0] not in WORKLOADS or not argv[1].isdigit() or int(argv[1]) < 2:
        sys.exit(
            f"usage: {Path(__file__).name} {{{'|'.join(WORKLOADS)}}} N (N >= 2)"
            " | all [REPEATS] | codec"
        )
    print(json.dumps(measure(argv[0], int(argv[1]))))


if __name__ == "__main__":
    main(sys.argv[1:])
