"""What a million steps cost on Google Cloud, from what the emulators count.

Usage: python bench/costs.py [--quick]

Starts the Firestore and Cloud Tasks emulators on 127.0.0.1 (the test suite's launchers,
stopped at the end) and runs whole runs of the ``chain`` workflow (quick nodes, no
expressions) through the production path below the HTTP layer: ``RunService.start`` for
the start, then ``Dispatcher.deliver`` for each delivery, with :class:`FirestoreStore`
(retention on, so finishing a run stamps its documents for TTL) and
:class:`CloudTasksScheduler` (real gRPC ``create_task``). Counted, per run, at the
clients:

* Firestore documents read (``BatchGetDocuments`` documents requested, ``RunQuery``
  documents returned, at least one per query, as Firestore bills), documents written
  (each write of a ``Commit``: transactions, batches and ``create`` all go through it),
  and documents deleted;
* Cloud Tasks operations: every ``CreateTask`` and ``GetTask`` call, plus one push
  delivery attempt per task created (a healthy queue delivers each task once);
* Cloud Run requests: one per delivery (the start's request belongs to the caller's API);
* this process's CPU seconds per delivery (``time.process_time``: the dispatcher, the
  Google clients, gRPC; the emulators are other processes), and its wall seconds per
  delivery, which on the real service is mostly waiting for Firestore and Cloud Tasks.

Each workload runs at batch 1 (``StepBudget(max_steps=1)``: one step per delivery, the
default) and batch 10. The figures are converted to US dollars per million steps with the
list prices in :data:`PRICES` (edit them for your region and tier); the free tiers are
left out. Every number is printed as one JSON line, then a markdown table.

Not counted: the HTTP request's parsing and the OIDC check of the step endpoint (a few
hundred microseconds of CPU, cached certificates), log ingestion, network egress, and
idle instance time; Cloud Run bills request time rounded up to 100 ms per instance, so at
low traffic (one step at a time per instance) each delivery is billed at least 100 ms.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from google.cloud import firestore

from bench.gcp import (
    Bench,
    CountingTasks,
    RpcCounter,
    emulated_clients,
    machine_notes,
    paused_queue,
)
from bench.workloads import chain_app
from refluxo.backends.gcp.firestore.store import FirestoreStore
from refluxo.runtime import Dispatcher, Outcome, RunService, StepBudget

PRICES: dict[str, float] = {
    "firestore_read": 0.06 / 100_000,
    "firestore_write": 0.18 / 100_000,
    "firestore_delete": 0.02 / 100_000,
    "tasks_operation": 0.40 / 1_000_000,
    "run_request": 0.40 / 1_000_000,
    "run_vcpu_second": 0.000024,
    "run_gib_second": 0.0000025,
}
"""US dollars per unit: Firestore Standard edition in a multi-region location (nam5),
Cloud Tasks beyond the first million operations a month, Cloud Run request-based billing
(tier 1 regions), as published on Google's pricing pages. TTL deletions are billed as
deletes."""

INSTANCE_VCPU = 1.0
INSTANCE_GIB = 1.0
"""The dispatcher's size as Terraform deploys it by default (``function_cpu = "1"``,
``function_memory = "1Gi"``)."""

RETENTION_DAYS = 30


@dataclass
class Counts:
    """Billable operations counted at the clients."""

    reads: int = 0
    writes: int = 0
    deletes: int = 0
    tasks_calls: int = 0
    tasks_created: int = 0

    def minus(self, other: Counts) -> Counts:
        return Counts(
            self.reads - other.reads,
            self.writes - other.writes,
            self.deletes - other.deletes,
            self.tasks_calls - other.tasks_calls,
            self.tasks_created - other.tasks_created,
        )


@dataclass
class Meter:
    """Wraps the Firestore client's GAPIC methods and counts what Firestore bills."""

    counts: Counts = field(default_factory=Counts)

    def install(self, client: firestore.Client) -> None:
        api = client._firestore_api  # the GAPIC client every public call goes through
        api.batch_get_documents = self._batch_get(api.batch_get_documents)
        api.run_query = self._query(api.run_query)
        api.commit = self._commit(api.commit)

    @staticmethod
    def _request(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return kwargs.get("request") or (args[0] if args else {})

    def _batch_get(self, method: Callable[..., Any]) -> Callable[..., Any]:
        def counted(*args: Any, **kwargs: Any) -> Any:
            self.counts.reads += len(self._request(args, kwargs)["documents"])
            return method(*args, **kwargs)

        return counted

    def _query(self, method: Callable[..., Any]) -> Callable[..., Any]:
        def counted(*args: Any, **kwargs: Any) -> Any:
            found = 0
            for response in method(*args, **kwargs):
                if response.document and response.document.name:
                    found += 1
                yield response
            self.counts.reads += max(found, 1)

        return counted

    def _commit(self, method: Callable[..., Any]) -> Callable[..., Any]:
        def counted(*args: Any, **kwargs: Any) -> Any:
            for write in self._request(args, kwargs)["writes"]:
                is_delete = (
                    bool(write.get("delete")) if isinstance(write, dict) else (bool(write.delete))
                )
                if is_delete:
                    self.counts.deletes += 1
                else:
                    self.counts.writes += 1
            return method(*args, **kwargs)

        return counted


class CountedTasks(CountingTasks):
    """``create_task`` and ``get_task``, each one billable operation."""

    def __init__(self, client: Any, counts: Counts) -> None:
        super().__init__(client)
        self.counts = counts

    def create_task(self, *, parent: str, task: Any) -> Any:
        self.counts.tasks_calls += 1
        self.counts.tasks_created += 1
        return super().create_task(parent=parent, task=task)

    def get_task(self, *, name: str) -> Any:
        self.counts.tasks_calls += 1
        return super().get_task(name=name)


def run_once(
    bench: Bench, meter: Meter, store: FirestoreStore, budget: StepBudget, length: int
) -> dict[str, Any]:
    """One whole run: its start, then every delivery until it completes."""
    dispatcher = Dispatcher(bench.app, store, bench.scheduler(), budget=budget)
    meter_counts = meter.counts
    before = Counts(**vars(meter_counts))
    run_id = f"c{uuid.uuid4().hex[:16]}"
    assert RunService(dispatcher).start("chain", {"k": 1}, run_id=run_id).created
    delivery = bench.tasks.last_delivery()
    deliveries = 0
    steps = 0
    cpu = 0.0
    wall = 0.0
    while True:
        cpu_before, wall_before = time.process_time(), time.perf_counter()
        result = bench.loop.run_until_complete(dispatcher.deliver(delivery))
        cpu += time.process_time() - cpu_before
        wall += time.perf_counter() - wall_before
        assert result.outcome == Outcome.COMMITTED, result
        assert result.record is not None
        deliveries += 1
        steps += result.steps
        if result.record.status == "completed":
            break
        delivery = bench.tasks.last_delivery()
    assert steps == length, (steps, length)
    counted = Counts(**vars(meter_counts)).minus(before)
    return {
        "steps": steps,
        "deliveries": deliveries,
        "cpu_s": cpu,
        "wall_s": wall,
        **vars(counted),
    }


def dollars_per_million_steps(row: dict[str, Any]) -> dict[str, float]:
    """Each line of the bill for a million steps of this workload."""
    scale = 1_000_000 / row["steps"]
    task_operations = row["tasks_calls"] + row["tasks_created"]  # + one push attempt each
    instance_seconds = row["wall_s"]
    return {
        "firestore_reads": row["reads"] * scale * PRICES["firestore_read"],
        "firestore_writes": row["writes"] * scale * PRICES["firestore_write"],
        "firestore_deletes (TTL)": row["expiring"] * scale * PRICES["firestore_delete"],
        "cloud_tasks": task_operations * scale * PRICES["tasks_operation"],
        "cloud_run_requests": row["deliveries"] * scale * PRICES["run_request"],
        "cloud_run_instance_time": instance_seconds
        * scale
        * (INSTANCE_VCPU * PRICES["run_vcpu_second"] + INSTANCE_GIB * PRICES["run_gib_second"]),
    }


def measure(bench: Bench, meter: Meter, lengths: list[int], runs: int) -> list[dict[str, Any]]:
    rows = []
    for retention in (RETENTION_DAYS, None):
        store = FirestoreStore(
            bench.firestore_client, prefix=bench.prefix, retention_days=retention
        )
        for length in lengths:
            bench.app = chain_app(length)
            bench.length = length
            for batch in (1, 10):
                rows.append(measure_one(bench, meter, store, retention, length, batch, runs))
    return rows


def measure_one(
    bench: Bench,
    meter: Meter,
    store: FirestoreStore,
    retention: int | None,
    length: int,
    batch: int,
    runs: int,
) -> dict[str, Any]:
    budget = StepBudget(max_steps=batch)
    run_once(bench, meter, store, budget, length)  # warm-up: definitions, connections
    totals: dict[str, Any] = {}
    with paused_queue(bench):
        for _ in range(runs):
            for key, value in run_once(bench, meter, store, budget, length).items():
                totals[key] = totals.get(key, 0) + value
    # With retention, every document a finished run leaves (head, results) expires and is
    # deleted by TTL: one billed delete each. The definition stays.
    totals["expiring"] = runs * (1 + length) if retention else 0
    row = {
        "measure": "run",
        "retention_days": retention,
        "length": length,
        "batch": batch,
        "runs": runs,
        **totals,
    }
    row["per_step"] = {
        key: round(totals[key] / totals["steps"], 4)
        for key in ("reads", "writes", "deletes", "tasks_calls", "tasks_created")
    }
    row["cpu_ms_per_delivery"] = round(totals["cpu_s"] / totals["deliveries"] * 1e3, 3)
    row["wall_ms_per_delivery"] = round(totals["wall_s"] / totals["deliveries"] * 1e3, 3)
    row["usd_per_million_steps"] = {
        key: round(value, 3) for key, value in dollars_per_million_steps(totals).items()
    }
    print(json.dumps(row), flush=True)
    return row


def table(rows: list[dict[str, Any]]) -> None:
    print()
    print(
        "| retention | workload | batch | reads / step | writes / step | task ops / step "
        "| CPU ms / delivery | wall ms / delivery (emulator) "
        "| $ Firestore | $ Cloud Tasks | $ Cloud Run "
        "| $ total / million steps |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        usd = row["usd_per_million_steps"]
        firestore_usd = (
            usd["firestore_reads"] + usd["firestore_writes"] + usd["firestore_deletes (TTL)"]
        )
        run_usd = usd["cloud_run_requests"] + usd["cloud_run_instance_time"]
        total = firestore_usd + usd["cloud_tasks"] + run_usd
        per_step = row["per_step"]
        task_ops = (row["tasks_calls"] + row["tasks_created"]) / row["steps"]
        days = row["retention_days"]
        retention = f"{days} days" if days else "kept"
        print(
            f"| {retention} "
            f"| runs of {row['length']} steps | {row['batch']} | {per_step['reads']:.3f} "
            f"| {per_step['writes']:.3f} | {task_ops:.3f} | {row['cpu_ms_per_delivery']:.2f} "
            f"| {row['wall_ms_per_delivery']:.2f} | {firestore_usd:.2f} | {usd['cloud_tasks']:.2f} "
            f"| {run_usd:.2f} | **{total:.2f}** |"
        )


def main() -> None:
    quick = "--quick" in sys.argv
    lengths = [5, 50] if quick else [5, 200]
    runs = 3 if quick else 6
    print(json.dumps(machine_notes()), flush=True)
    print(json.dumps({"measure": "prices", **PRICES}), flush=True)
    with emulated_clients() as (client, tasks_client, url):
        meter = Meter()
        meter.install(client)
        loop = asyncio.new_event_loop()
        bench = Bench(
            app=chain_app(lengths[0]),
            length=lengths[0],
            firestore_client=client,
            tasks_client=tasks_client,
            tasks=CountedTasks(tasks_client, meter.counts),
            rpcs=RpcCounter(),  # not installed: the meter counts this benchmark's operations
            prefix=f"cost{uuid.uuid4().hex[:8]}",
            url=url,
            loop=loop,
        )
        try:
            rows = measure(bench, meter, lengths, runs)
        finally:
            loop.close()
    table(rows)


if __name__ == "__main__":
    main()
