"""Per-step cost of a step that reads history, at 100 vs 10,000 results, on the Firestore emulator.

Usage: python bench/firestore_history.py [--quick]

Starts the Firestore emulator on 127.0.0.1 (with the test suite's launcher, stopped by PID
at the end) and builds two runs of one workflow, a node ``it`` that loops on itself and,
on every step, reads its own history through the context the dispatcher gives it:
``len(context["it"])`` (a count: from the head, no read), ``context["it"][-1]`` (the last
result) and ``context["it"][k]`` for an older ``k`` that moves pseudo-randomly over the
whole history (each one document get by name in :class:`FirestoreStore`), then returns a
~1 KB output. Each output records what it read, and every step's output is checked.

* **small**: a run with 100 results, a fresh one for each block of rounds (so it holds
  100 to 100 + block results while timed); **large**: one run with 10,000 (growing by one
  result per round). All are grown by the real dispatcher with
  ``StepBudget(max_steps=400)`` (400 results per commit) before anything is timed.
* **timed**: one ``Dispatcher.deliver`` of one step (``StepBudget(max_steps=1)``) of each
  run per round, the order flipping every round, so that drift (the emulator's JVM warming
  up, a busy neighbour) hits both alike. A step is: ``load_run`` (one get of the head),
  the node's two history reads, the commit (one batch: head + result). The scheduler is an
  in-process list (no Cloud Tasks): what is timed is the store and the dispatcher.
  Warm-up rounds (on a run of their own beside the large one) are run first and not
  counted. Reported: the median and mean microseconds per step of each side, their ratio
  (large / small), and the ratio per block of rounds, to show its spread. Firestore RPCs
  per step are counted at the client's GAPIC methods.
* **contrast** (emulator only): the query the previous layout sent for one result,
  ``nodeId == "it" and nodeIndex == k`` on the same results (the fields are still
  written), timed the same way at both sizes. The emulator answers it by scanning; the
  service would serve it from indexes. It shows what the emulator measures, not what
  production would.

Every number is printed as one JSON line, then a markdown table.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import statistics
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from refluxo import StepResult
from refluxo.backends.gcp.firestore.layout import run_document_id
from refluxo.backends.gcp.firestore.store import FirestoreStore
from refluxo.runtime import App, Dispatcher, Outcome, RunService, StepBudget
from refluxo.runtime.ports import Delivery
from tests.support.emulators import EMULATOR_PROJECT, FIRESTORE_JAR, start_firestore

SIZES = {"small": 100, "large": 10_000}
TARGET_RATIO = 1.2
PAD = "x" * 1_000
RPCS = ("batch_get_documents", "begin_transaction", "commit", "rollback", "run_query")


def history_app() -> App:
    """One workflow, "reader": ``it`` loops on itself, reading its own history each step."""
    app = App(transform_engines=[])

    @app.node()
    def reader(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        done = len(context["it"]) if "it" in context else 0
        last = older = -1
        k = -1
        if done:
            results = context["it"]
            last = results[-1].output["i"]
            k = (done * 7_919) % done  # pseudo-random over the whole history
            older = results[k].output["i"]
        return StepResult(
            {"i": done, "last": last, "k": k, "older": older, "pad": PAD}, next_handle="loop"
        )

    app.workflow(
        "reader",
        {
            "nodes": [{"id": "it", "type": "reader"}],
            "edges": [{"source": "it", "target": "it", "sourceHandle": "loop"}],
        },
    )
    return app


class Deliveries:
    """The scheduler: remembers each run's next delivery (nothing is sent anywhere)."""

    def __init__(self) -> None:
        self.next: dict[str, Delivery] = {}

    def schedule(self, delivery: Delivery) -> None:
        self.next[delivery.run_id] = delivery


class RpcCounter:
    """Counts the Firestore RPCs a client sends, by method."""

    def __init__(self, client: firestore.Client) -> None:
        self.calls: Counter[str] = Counter()
        api = client._firestore_api  # the GAPIC client every call goes through
        for name in RPCS:
            setattr(api, name, self._wrap(name, getattr(api, name)))

    def _wrap(self, name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            return method(*args, **kwargs)

        return counted


class Bench:
    def __init__(self, client: firestore.Client, rpcs: RpcCounter) -> None:
        self.client = client
        self.rpcs = rpcs
        self.prefix = f"bench{uuid.uuid4().hex[:8]}"
        self.store = FirestoreStore(client, prefix=self.prefix)
        self.app = history_app()
        self.deliveries = Deliveries()
        self.loop = asyncio.new_event_loop()
        self.seeding = Dispatcher(
            self.app, self.store, self.deliveries, budget=StepBudget(max_steps=400)
        )
        self.stepping = Dispatcher(self.app, self.store, self.deliveries)

    def deliver(self, dispatcher: Dispatcher, run_id: str) -> None:
        delivery = self.deliveries.next.pop(run_id)
        outcome = self.loop.run_until_complete(dispatcher.deliver(delivery))
        assert outcome.outcome == Outcome.COMMITTED, outcome

    def seed(self, run_id: str, results: int) -> None:
        """Start ``run_id`` and grow it to ``results`` results through the dispatcher."""
        assert RunService(self.seeding).start("reader", {}, run_id=run_id).created
        while self.result_count(run_id) < results:
            missing = results - self.result_count(run_id)
            dispatcher = self.seeding
            if missing < 400:
                budget = StepBudget(max_steps=missing)
                dispatcher = Dispatcher(self.app, self.store, self.deliveries, budget=budget)
            self.deliver(dispatcher, run_id)
        assert self.result_count(run_id) == results

    def result_count(self, run_id: str) -> int:
        record = self.store.load_run(run_id)
        assert record is not None
        return record.result_count

    def step(self, run_id: str) -> float:
        """One timed delivery of one step; checks what the step read."""
        started = time.perf_counter()
        self.deliver(self.stepping, run_id)
        elapsed = time.perf_counter() - started
        record = self.store.load_run(run_id)
        assert record is not None
        last = self.store.history(record).get("it", record.result_count - 1).output
        assert last["last"] == last["i"] - 1, last
        assert last["older"] == last["k"], last
        return elapsed

    def old_query(self, run_id: str, index: int) -> float:
        """The previous layout's read of one result: a query on nodeId and nodeIndex."""
        results = self.client.collection(f"{self.prefix}_runs").document(run_document_id(run_id))
        query = (
            results.collection("results")
            .where(filter=FieldFilter("nodeId", "==", "it"))
            .where(filter=FieldFilter("nodeIndex", "==", index))
            .limit(1)
        )
        started = time.perf_counter()
        (found,) = query.get()
        elapsed = time.perf_counter() - started
        assert found.to_dict()["nodeIndex"] == index
        return elapsed


def emit(row: dict[str, Any]) -> None:
    print(json.dumps(row), flush=True)


def us(seconds: list[float], how: Callable[[list[float]], float]) -> float:
    return round(how(seconds) * 1e6, 1)


def interleaved(
    names: list[str], rounds: int, action: Callable[[str, int], float]
) -> dict[str, list[float]]:
    """``action(name, round)`` for each name once per round, the order flipping each round."""
    times: dict[str, list[float]] = {name: [] for name in names}
    for index in range(rounds):
        order = names if index % 2 == 0 else list(reversed(names))
        for name in order:
            times[name].append(action(name, index))
    return times


def main() -> None:
    quick = "--quick" in sys.argv
    warmup, rounds, block = (40, 200, 50) if quick else (200, 1_000, 100)
    notes = {
        "measure": "machine",
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "firestore_client": firestore.__version__,
        "firestore_emulator": str(FIRESTORE_JAR),
        "warmup_rounds": warmup,
        "rounds": rounds,
    }
    emit(notes)
    emulator = start_firestore()
    try:
        os.environ["FIRESTORE_EMULATOR_HOST"] = emulator.host_port
        try:
            client = firestore.Client(project=EMULATOR_PROJECT)
        finally:
            del os.environ["FIRESTORE_EMULATOR_HOST"]
        rpcs = RpcCounter(client)
        bench = Bench(client, rpcs)
        try:
            rows = measure(bench, warmup, rounds, block)
        finally:
            bench.loop.close()
    finally:
        emulator.process.stop()
    table(rows, warmup, rounds, block)


def measure(bench: Bench, warmup: int, rounds: int, block: int) -> dict[str, Any]:
    names = list(SIZES)
    started = time.perf_counter()
    bench.seed("large", SIZES["large"])
    bench.seed("warm", SIZES["small"])
    emit({"measure": "seeded", "sizes": SIZES, "seconds": round(time.perf_counter() - started)})
    # The small side stays small: a fresh run of 100 results for each block of rounds
    # (the large run grows from 10,000 by the rounds, a few percent).
    current = {"small": "warm", "large": "large"}
    interleaved(names, warmup, lambda name, _: bench.step(current[name]))
    per_step: dict[str, Counter[str]] = {}
    for name in names:  # RPCs of one step of each, counted apart
        counted = Counter(bench.rpcs.calls)
        bench.step(current[name])
        per_step[name] = Counter(bench.rpcs.calls) - counted
        per_step[name]["batch_get_documents"] -= 2  # the check's load_run and get
    times: dict[str, list[float]] = {name: [] for name in names}
    small_runs: list[str] = []
    large_from = bench.result_count("large")
    for index in range(0, rounds, block):
        current["small"] = f"small-{index // block}"
        bench.seed(current["small"], SIZES["small"])
        small_runs.append(current["small"])
        part = interleaved(names, block, lambda name, _: bench.step(current[name]))
        for name in names:
            times[name] += part[name]

    small_after = max(bench.result_count(run_id) for run_id in small_runs)
    rows: dict[str, Any] = {}
    for name, (first, last) in {
        "small": (SIZES["small"], small_after),
        "large": (large_from, bench.result_count("large")),
    }.items():
        rows[name] = {
            "measure": "step reading history",
            "run": name,
            "results_before": first,
            "results_after": last,
            "median_us": us(times[name], statistics.median),
            "mean_us": us(times[name], statistics.mean),
            "rpcs_per_step": dict(+per_step[name]),
        }
        emit(rows[name])
    ratio = statistics.median(times["large"]) / statistics.median(times["small"])
    mean_ratio = statistics.mean(times["large"]) / statistics.mean(times["small"])
    blocks = [
        statistics.median(times["large"][i : i + block])
        / statistics.median(times["small"][i : i + block])
        for i in range(0, rounds, block)
    ]
    rows["ratio"] = {
        "measure": "ratio large / small",
        "median": round(ratio, 3),
        "mean": round(mean_ratio, 3),
        "blocks_min": round(min(blocks), 3),
        "blocks_max": round(max(blocks), 3),
        "target": TARGET_RATIO,
        "met": ratio <= TARGET_RATIO,
    }
    emit(rows["ratio"])

    contrast_rounds = max(20, rounds // 10)
    current["small"] = "warm"
    sizes = {name: bench.result_count(current[name]) for name in names}
    contrast = interleaved(
        names,
        contrast_rounds,
        lambda name, index: bench.old_query(current[name], (index * 7_919) % sizes[name]),
    )
    rows["contrast"] = {
        "measure": "emulator: query nodeId == it and nodeIndex == k (the previous get)",
        "rounds": contrast_rounds,
        "results": sizes,
        **{f"{name}_median_us": us(contrast[name], statistics.median) for name in names},
        "ratio": round(
            statistics.median(contrast["large"]) / statistics.median(contrast["small"]), 2
        ),
    }
    emit(rows["contrast"])
    return rows


def table(rows: dict[str, Any], warmup: int, rounds: int, block: int) -> None:
    small, large, ratio, contrast = rows["small"], rows["large"], rows["ratio"], rows["contrast"]
    print()
    print(f"Interleaved rounds: {rounds} (after {warmup} warm-up rounds); blocks of {block}.")
    print()
    print("| measure | small run | large run |")
    print("|---|---:|---:|")
    print(
        f"| results in the run while timed | {small['results_before']}-"
        f"{small['results_after']} | {large['results_before']}-{large['results_after']} |"
    )
    print(f"| µs / step, median | {small['median_us']} | {large['median_us']} |")
    print(f"| µs / step, mean | {small['mean_us']} | {large['mean_us']} |")
    for rpc in sorted(set(small["rpcs_per_step"]) | set(large["rpcs_per_step"])):
        print(
            f"| {rpc} / step | {small['rpcs_per_step'].get(rpc, 0)} | "
            f"{large['rpcs_per_step'].get(rpc, 0)} |"
        )
    print(
        f"| emulator, previous query for one result ({contrast['results']['small']} / "
        f"{contrast['results']['large']} results): µs, median | "
        f"{contrast['small_median_us']} | {contrast['large_median_us']} |"
    )
    print()
    verdict = "met" if ratio["met"] else "MISSED"
    print(
        f"Ratio large / small (median): **{ratio['median']}** (target <= {TARGET_RATIO}, "
        f"{verdict}); mean {ratio['mean']}; per block of {block} rounds "
        f"{ratio['blocks_min']}-{ratio['blocks_max']}. The previous query: {contrast['ratio']}x."
    )


if __name__ == "__main__":
    main()
