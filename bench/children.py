"""Child runs on the embedded default: a ``map`` of N children against a loop of N iterations.

Usage: python bench/children.py [--rounds N] [--quick] [--concurrency C]
                                [--synchronous FULL|NORMAL|OFF] [--emulators] [--io-ms MS]

Two ways to do the same per-item work (item ``{"x": k}`` becomes ``{"y": 2k}``), both on
``EmbeddedRuntime`` (SQLite, its default worker count, one step per delivery):

* **map**: one parent run, a trigger then a ``map`` node over its input's ``items`` with
  ``concurrency`` C (default 50) and ``"fail_fast"``: one child run per item, each child
  a trigger then one quick node (``{"y": 2x}``); the parent's output lists the children's
  outputs in item order;
* **loop**: one run doing the items one after the other: a trigger, an iterator node
  (handles ``again`` / ``done``, reads the item at its index from the trigger's output),
  a body node (the same quick work), and at ``done`` a node that lists the body's outputs
  (the same output as the map's). This is the fair baseline: the same work, sequential,
  in one run.

Measured: the map and the loop over 1,000 items, and the map over 10,000 (is a child's cost
flat?; not with ``--quick``). Each measurement runs in a fresh process with a fresh
temporary directory; building the runtime is not timed, the clock starts before the
parent's start (``RunService.start``, in process) and stops when the parent has completed.
Besides wall time, the process's CPU time over that span (every thread). Then, once the
scheduler is idle (the last children's own bookkeeping commits after their parent has
joined), the store is counted: write transactions (every ``SqliteDatabase.write``: steps,
starts, ledger entries, delivery bookkeeping, counted by a wrapper around it during the
run), the store's writes before group commit folds several into one transaction
(:class:`StoreCalls`), and rows in ``deliveries``, ``runs``, ``results`` and
``child_ends``, each per item.
Every result is checked before it is reported: the parent completed, its output is the
list of every item's output in item order, and for the map every child completed and was
reported once. Rounds interleave (every configuration once per round, the order reversed
every other round), the table shows medians and every round's value, and the ratio
map / loop is taken within each round. The load average is printed per round.

``--synchronous OFF`` (or ``NORMAL``) opens the SQLite file in that durability mode
instead of ``FULL``: how much of the time is the fsyncs.

``--io-ms MS`` makes each item's work wait MS milliseconds first (an ``async`` node
awaiting ``asyncio.sleep``: a remote call's latency, the work a map is for), and measures
the map and the loop of 1,000 only.

``--emulators`` measures the map and the loop of 1,000 on the Firestore emulator instead
(one emulator per measurement, started with the test suite's launcher and stopped by its
PID): ``FirestoreStore`` and the dispatcher driven in this process by a scheduler of its own
(:class:`Deliveries`: each delivery once by name, handed to the default worker count of
threads calling ``RunService.deliver``; no Cloud Tasks). An untimed run over 200 items goes
first in each process (the emulator's JVM warms up). Reported besides: the emulator's own
CPU time (from ``/proc``), Firestore RPCs by method and documents written (counted at the
client's GAPIC object), each per item. The same checks, each child read back.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import queue
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from refluxo import StepResult
from refluxo.host.embedded import EmbeddedRuntime
from refluxo.host.settings import DEFAULT_WORKERS
from refluxo.runtime import App, Dispatcher, RunService
from refluxo.runtime.ports import Delivery

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONCURRENCY = 50
SYNCHRONOUS_MODES = ("FULL", "NORMAL", "OFF")


@dataclass(frozen=True)
class Config:
    """One configuration measured each round: a ``map`` or a ``loop`` over ``items``."""

    shape: str
    items: int

    @property
    def name(self) -> str:
        return f"{self.shape} {self.items:,}"


CONFIGS = (Config("map", 1000), Config("loop", 1000), Config("map", 10_000))
QUICK_CONFIGS = (Config("map", 40), Config("loop", 40))
EMULATOR_CONFIGS = (Config("map", 1000), Config("loop", 1000))
QUICK_EMULATOR_CONFIGS = (Config("map", 40), Config("loop", 40))
IO_CONFIGS = (Config("map", 1000), Config("loop", 1000))
IO_MS_VARIABLE = "REFLUXO_BENCH_IO_MS"
"""How long each item's work waits (ms), passed to the measuring processes."""
EMULATOR_WARMUP = 200
"""Items of the untimed run that warms each fresh emulator up (its JVM's JIT)."""


def build_app() -> App:
    """Three workflows: ``item`` (a child), ``fanout`` (the map) and ``loop``."""
    app = App()
    io_s = float(os.environ.get(IO_MS_VARIABLE, "0")) / 1000

    def doubled(item: dict[str, int]) -> StepResult:
        return StepResult({"y": item["x"] * 2})

    if io_s:  # the item's work waits on I/O first: async nodes that await it

        @app.node("quick")
        async def quick_after_io(data: Any, context: Any, payload: Any, g: Any) -> StepResult:
            await asyncio.sleep(io_s)
            return doubled(context["start"][-1].output)

        @app.node("body")
        async def body_after_io(data: Any, context: Any, payload: Any, g: Any) -> StepResult:
            await asyncio.sleep(io_s)
            return doubled(context["it"][-1].output["item"])

    else:

        @app.node()
        def quick(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
            return doubled(context["start"][-1].output)

        @app.node()
        def body(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
            return doubled(context["it"][-1].output["item"])

    @app.node()
    def iterate(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        index = len(context.get("it", []))
        items = context["start"][-1].output["items"]
        if index < len(items):
            return StepResult({"index": index, "item": items[index]}, next_handle="again")
        return StepResult({"done": index}, next_handle="done")

    @app.node()
    def collect(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        return StepResult([result.output for result in context["body"]])

    trigger = {"id": "start", "type": "trigger"}
    app.workflow(
        "item",
        {"nodes": [trigger, {"id": "q", "type": "quick"}], "edges": [edge("start", "q")]},
    )
    app.workflow(
        "fanout",
        {
            "nodes": [
                trigger,
                {
                    "id": "m",
                    "type": "map",
                    "data": {
                        "items": "{{ nodes.start.output.items }}",
                        "workflow": "item",
                        "concurrency": "{{ nodes.start.output.concurrency }}",
                        "failure": "fail_fast",
                    },
                },
            ],
            "edges": [edge("start", "m")],
        },
    )
    app.workflow(
        "loop",
        {
            "nodes": [
                trigger,
                {"id": "it", "type": "iterate"},
                {"id": "body", "type": "body"},
                {"id": "end", "type": "collect"},
            ],
            "edges": [
                edge("start", "it"),
                edge("it", "body", "again"),
                edge("body", "it"),
                edge("it", "end", "done"),
            ],
        },
    )
    return app


def edge(source: str, target: str, handle: str | None = None) -> dict[str, str]:
    return {"source": source, "target": target} | ({"sourceHandle": handle} if handle else {})


def expected_output(items: int) -> list[dict[str, int]]:
    return [{"y": 2 * k} for k in range(items)]


class WriteCounter:
    """Counts write transactions on a runtime's database (every ``db.write()``)."""

    def __init__(self, runtime: EmbeddedRuntime) -> None:
        self.count = 0
        lock = threading.Lock()
        write = runtime.db.write

        def counted() -> AbstractContextManager[sqlite3.Connection]:
            with lock:
                self.count += 1
            return write()

        runtime.db.write = counted  # type: ignore[method-assign]


class StoreCalls:
    """Counts the store's writes by kind, before any grouping into transactions: step
    commits (``commit``: steps, child bookkeeping, joins), run creations (``create_run``),
    ledger entries (``record_child_end``) and the children's inputs (``put_child_inputs``,
    once per wait)."""

    KINDS = ("commit", "create_run", "record_child_end", "put_child_inputs")

    def __init__(self, store: Any) -> None:
        self.counts = dict.fromkeys(self.KINDS, 0)
        lock = threading.Lock()
        for kind in self.KINDS:
            original = getattr(store, kind)

            def counted(
                *args: Any, _kind: str = kind, _original: Any = original, **kwargs: Any
            ) -> Any:
                with lock:
                    self.counts[_kind] += 1
                return _original(*args, **kwargs)

            setattr(store, kind, counted)


def wait_run(path: Path, run_id: str, timeout: float = 900.0) -> None:
    """Poll (on a connection of its own) until ``run_id`` has completed; raise if it
    failed or takes longer than ``timeout``."""
    connection = sqlite3.connect(path, isolation_level=None)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            row = connection.execute(
                "SELECT status FROM runs WHERE run_id = ?", (run_id,)
            ).fetchone()
            if row is not None and row[0] == "completed":
                return
            if row is not None and row[0] == "failed":
                raise RuntimeError(f"run {run_id!r} failed")
            time.sleep(0.002)
    finally:
        connection.close()
    raise TimeoutError(f"run {run_id!r} did not complete in {timeout} s")


def count_rows(path: Path) -> dict[str, int]:
    connection = sqlite3.connect(path)
    try:
        return {
            table: int(connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
            for table in ("deliveries", "runs", "results", "child_ends")
        }
    finally:
        connection.close()


def child_states(path: Path) -> tuple[int, int]:
    """Children completed, and children marked reported to their parent."""
    connection = sqlite3.connect(path)
    try:
        heads = [
            json.loads(head)
            for (head,) in connection.execute(
                "SELECT head FROM runs WHERE status = 'completed' AND run_id != 'parent'"
            )
        ]
    finally:
        connection.close()
    reported = sum(1 for head in heads if head["metadata"]["parentRun"].get("reported") is True)
    return len(heads), reported


def measure(
    directory: Path, shape: str, items: int, concurrency: int, synchronous: str
) -> dict[str, Any]:
    """One configuration, timed from the parent's start to its completion, then checked."""
    path = directory / "children.db"
    runtime = EmbeddedRuntime(build_app(), path, synchronous=synchronous)
    writes = WriteCounter(runtime)
    calls = StoreCalls(runtime.store)
    runtime.start()
    data = {"items": [{"x": k} for k in range(items)], "concurrency": concurrency}
    workflow = "fanout" if shape == "map" else "loop"
    try:
        started = time.perf_counter()
        cpu = time.process_time()
        runtime.service.start(workflow, data, run_id="parent")
        wait_run(path, "parent")
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu
        if not runtime.scheduler.wait_idle(120.0):
            raise RuntimeError("the scheduler did not settle after the parent completed")
        parent = runtime.service.get("parent")
        output = runtime.service.timeline("parent", after_seq=parent.result_count - 2, limit=1)[
            0
        ].result.output
        transactions = writes.count
        store_calls = dict(calls.counts)
    finally:
        runtime.stop()
    rows = count_rows(path)
    assert output == expected_output(items), "the parent's output is wrong"
    if shape == "map":
        completed, reported = child_states(path)
        assert rows["runs"] == items + 1, rows
        assert completed == reported == items, (completed, reported, items)
        assert rows["child_ends"] == items, rows
        assert rows["results"] == 2 * items + 2, rows
    else:
        assert rows["runs"] == 1, rows
        assert rows["results"] == 2 * items + 3, rows
    return {
        "shape": shape,
        "items": items,
        "concurrency": concurrency if shape == "map" else None,
        "workers": DEFAULT_WORKERS,
        "synchronous": synchronous,
        "seconds": elapsed,
        "ms_per_item": elapsed / items * 1e3,
        "cpu_us_per_item": cpu / items * 1e6,
        "writes_per_item": transactions / items,
        "store_writes_per_item": sum(store_calls.values()) / items,
        **{f"{kind}_per_item": count / items for kind, count in store_calls.items()},
        **{f"{table}_per_item": count / items for table, count in rows.items()},
    }


# -- the Firestore emulator ---------------------------------------------------------------


class Deliveries:
    """The emulator figure's scheduler, in this process (no Cloud Tasks): each delivery
    once by name (as the memory scheduler does), in the order scheduled, to ``workers``
    threads that call ``RunService.deliver``; one that raises is tried again 50 ms later,
    at most ``ATTEMPTS`` times."""

    ATTEMPTS = 20

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.scheduled = 0
        self.retried = 0
        self.errors: list[str] = []
        self.watched = "parent"
        self.parent_completed = threading.Event()
        """Set when the run :attr:`watched` completes (or a delivery gives up)."""
        self._queue: queue.Queue[tuple[Delivery, int] | None] = queue.Queue()
        self._names: set[str] = set()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def schedule(self, delivery: Delivery) -> None:
        with self._lock:
            if delivery.name in self._names:
                return
            self._names.add(delivery.name)
            self.scheduled += 1
        self._queue.put((delivery, 1))

    def start(self, service: RunService) -> None:
        for index in range(self.workers):
            thread = threading.Thread(
                target=self._work, args=(service,), name=f"bench-worker-{index}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def _work(self, service: RunService) -> None:
        while (entry := self._queue.get()) is not None:
            delivery, attempt = entry
            try:
                wait = delivery.due_at - time.time() * 1000
                if wait > 0:
                    time.sleep(wait / 1000)
                result = service.deliver(delivery)
                record = result.record
                if (
                    record is not None
                    and record.run_id == self.watched
                    and record.status == "completed"
                ):
                    self.parent_completed.set()
            except Exception as err:
                with self._lock:
                    self.retried += 1
                if attempt < self.ATTEMPTS:
                    time.sleep(0.05)
                    self._queue.put((delivery, attempt + 1))
                else:
                    self.errors.append(f"{delivery}: {err!r}")
                    self.parent_completed.set()  # give up: the check reports it
            finally:
                self._queue.task_done()
        self._queue.task_done()

    def settle(self) -> None:
        """Wait until every delivery scheduled so far (and those they made) is done."""
        self._queue.join()

    def stop(self) -> None:
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join(30)


class FirestoreRpcs:
    """Counts the RPCs a Firestore client sends by method, and the document writes its
    ``Commit`` requests carry (at the GAPIC client every public call goes through)."""

    METHODS = ("batch_get_documents", "begin_transaction", "commit", "rollback", "run_query")

    def __init__(self, client: Any) -> None:
        self.calls = dict.fromkeys(self.METHODS, 0)
        self.documents_written = 0
        lock = threading.Lock()
        api = client._firestore_api
        for name in self.METHODS:
            original = getattr(api, name)

            def counted(
                *args: Any, _name: str = name, _original: Any = original, **kwargs: Any
            ) -> Any:
                with lock:
                    self.calls[_name] += 1
                    if _name == "commit":
                        request = kwargs.get("request") or (args[0] if args else {})
                        self.documents_written += len(request["writes"])
                return _original(*args, **kwargs)

            setattr(api, name, counted)


def process_cpu_seconds(pid: int) -> float:
    """User and system CPU time of process ``pid`` so far (its threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure_emulator(shape: str, items: int, concurrency: int, warmup: int) -> dict[str, Any]:
    """One configuration on a Firestore emulator of its own: ``FirestoreStore``, the
    dispatcher driven in this process by :class:`Deliveries` (the default worker count).
    A run of the same shape over ``warmup`` items goes first, untimed and uncounted (the
    emulator's JVM is much slower for its first few thousand requests)."""
    from google.cloud import firestore

    from refluxo.backends.gcp.firestore.store import FirestoreStore
    from refluxo.runtime.links import child_run_id, needs_report
    from tests.support.emulators import EMULATOR_PROJECT, start_firestore

    emulator = start_firestore()
    try:
        os.environ["FIRESTORE_EMULATOR_HOST"] = emulator.host_port
        try:
            client = firestore.Client(project=EMULATOR_PROJECT)
        finally:
            del os.environ["FIRESTORE_EMULATOR_HOST"]
        store = FirestoreStore(client, prefix=f"bench{uuid.uuid4().hex[:8]}")
        rpcs = FirestoreRpcs(client)
        calls = StoreCalls(store)
        deliveries = Deliveries(DEFAULT_WORKERS)
        service = RunService(Dispatcher(build_app(), store, deliveries))
        deliveries.start(service)
        workflow = "fanout" if shape == "map" else "loop"

        def run(run_id: str, count: int) -> None:
            deliveries.watched = run_id
            deliveries.parent_completed.clear()
            data = {"items": [{"x": k} for k in range(count)], "concurrency": concurrency}
            service.start(workflow, data, run_id=run_id)
            if not deliveries.parent_completed.wait(1800):
                raise TimeoutError(f"run {run_id!r} did not complete in 1,800 s")

        try:
            if warmup:
                run("warmup", warmup)
                deliveries.settle()
            before = (dict(rpcs.calls), rpcs.documents_written, dict(calls.counts))
            scheduled = deliveries.scheduled
            started = time.perf_counter()
            cpu = time.process_time()
            emulator_cpu = process_cpu_seconds(emulator.process.pid)
            run("parent", items)
            elapsed = time.perf_counter() - started
            cpu = time.process_time() - cpu
            emulator_cpu = process_cpu_seconds(emulator.process.pid) - emulator_cpu
            deliveries.settle()
            assert not deliveries.errors, deliveries.errors[:5]
            counted_rpcs = {name: n - before[0][name] for name, n in rpcs.calls.items()}
            documents = rpcs.documents_written - before[1]
            store_calls = {kind: n - before[2][kind] for kind, n in calls.counts.items()}
            scheduled = deliveries.scheduled - scheduled
            parent = service.get("parent")
            assert parent.status == "completed", parent.status
            output = service.timeline("parent", after_seq=parent.result_count - 2, limit=1)[
                0
            ].result.output
            assert output == expected_output(items), "the parent's output is wrong"
            if shape == "map":
                version = int(parent.snapshot.metadata["childRuns"]["version"])
                for index in range(items):
                    child = service.get(child_run_id("parent", version, index))
                    assert child.status == "completed", (index, child.status)
                    assert needs_report(child.snapshot) is None, index
                ends = store.child_ends("parent", version, limit=items + 1)
                assert [end.index for end in ends] == list(range(items))
            else:
                assert parent.result_count == 2 * items + 3, parent.result_count
        finally:
            deliveries.stop()
            service.close()
    finally:
        emulator.process.stop()
    return {
        "shape": shape,
        "items": items,
        "backend": "firestore emulator",
        "concurrency": concurrency if shape == "map" else None,
        "workers": DEFAULT_WORKERS,
        "warmup_items": warmup,
        "seconds": elapsed,
        "ms_per_item": elapsed / items * 1e3,
        "cpu_us_per_item": cpu / items * 1e6,
        "emulator_cpu_us_per_item": emulator_cpu / items * 1e6,
        "deliveries_per_item": scheduled / items,
        "retried_deliveries": deliveries.retried,
        "store_writes_per_item": sum(store_calls.values()) / items,
        **{f"{kind}_per_item": count / items for kind, count in store_calls.items()},
        "documents_written_per_item": documents / items,
        **{f"rpc_{name}_per_item": count / items for name, count in counted_rpcs.items()},
    }


def run_child(command: list[str]) -> dict[str, Any]:
    """Run one measurement in its own process; its last line of output is the JSON row."""
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{command} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    row: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return row


def measure_apart(
    config: Config, concurrency: int, synchronous: str, emulator_warmup: int | None
) -> dict[str, Any]:
    """One configuration in a fresh process and a fresh temporary directory (on the
    embedded default), or with an emulator of its own (``emulator_warmup`` not None)."""
    if emulator_warmup is not None:
        arguments = [config.shape, str(config.items), str(concurrency), str(emulator_warmup)]
        return run_child([sys.executable, __file__, "--child-emulator", *arguments])
    with tempfile.TemporaryDirectory(dir=os.environ.get("REFLUXO_BENCH_DIR")) as scratch:
        arguments = [config.shape, str(config.items), str(concurrency), synchronous, scratch]
        return run_child([sys.executable, __file__, "--child", *arguments])


def cell(values: list[float], digits: int) -> str:
    """A median, bold, followed by every round's value."""
    each = ", ".join(f"{value:.{digits}f}" for value in values)
    return f"**{statistics.median(values):.{digits}f}** ({each})"


def median(rows: list[dict[str, Any]], key: str, digits: int) -> str:
    return f"{statistics.median(row[key] for row in rows):.{digits}f}"


EMBEDDED_COLUMNS = (
    # header, key, digits
    ("ms/item", "ms_per_item", 3),
    ("CPU µs/item", "cpu_us_per_item", 0),
    ("write transactions/item", "writes_per_item", 2),
    ("store writes/item", "store_writes_per_item", 2),
    ("deliveries/item", "deliveries_per_item", 2),
    ("runs/item", "runs_per_item", 3),
    ("results/item", "results_per_item", 3),
    ("child_ends/item", "child_ends_per_item", 2),
)
EMULATOR_COLUMNS = (
    ("ms/item", "ms_per_item", 2),
    ("CPU µs/item (this process)", "cpu_us_per_item", 0),
    ("emulator CPU µs/item", "emulator_cpu_us_per_item", 0),
    ("store writes/item", "store_writes_per_item", 2),
    ("deliveries/item", "deliveries_per_item", 2),
    ("Commit RPCs/item", "rpc_commit_per_item", 2),
    ("documents written/item", "documents_written_per_item", 2),
    ("BatchGetDocuments/item", "rpc_batch_get_documents_per_item", 2),
    ("RunQuery/item", "rpc_run_query_per_item", 3),
    ("transactions/item", "rpc_begin_transaction_per_item", 3),
)


def table(measured: dict[Config, list[dict[str, Any]]], *, emulator: bool = False) -> str:
    """Markdown: one line per configuration (medians; wall time per round too), then the
    ratios taken within each round."""
    columns = EMULATOR_COLUMNS if emulator else EMBEDDED_COLUMNS
    lines = [
        "| configuration | wall s | " + " | ".join(header for header, _, _ in columns) + " |",
        "|---|---:|" + "---:|" * len(columns),
    ]
    for config, rows in measured.items():
        values = [median(rows, key, digits) for _, key, digits in columns]
        wall = cell([row["seconds"] for row in rows], 2)
        lines.append(f"| {config.name} | {wall} | " + " | ".join(values) + " |")
    lines += ["", "| ratio, per round | wall | CPU |", "|---|---:|---:|"]
    for (top, bottom), label in pairs(list(measured)):
        walls = [
            a["ms_per_item"] / b["ms_per_item"]
            for a, b in zip(measured[top], measured[bottom], strict=True)
        ]
        cpus = [
            a["cpu_us_per_item"] / b["cpu_us_per_item"]
            for a, b in zip(measured[top], measured[bottom], strict=True)
        ]
        lines.append(f"| {label} | {cell(walls, 2)}x | {cell(cpus, 2)}x |")
    return "\n".join(lines)


def pairs(configs: list[Config]) -> Iterator[tuple[tuple[Config, Config], str]]:
    """The ratios worth a line: map / loop at the same size, and a child's cost per item
    at the largest map against the smallest."""
    maps = sorted((c for c in configs if c.shape == "map"), key=lambda c: c.items)
    for config in maps:
        loop = Config("loop", config.items)
        if loop in configs:
            yield (config, loop), f"{config.name} / {loop.name} (per item)"
    if len(maps) > 1:
        yield (maps[-1], maps[0]), f"{maps[-1].name} / {maps[0].name} (per child)"


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        shape, items, concurrency, synchronous, scratch = sys.argv[2:7]
        row = measure(Path(scratch), shape, int(items), int(concurrency), synchronous)
        print(json.dumps(row), flush=True)
        return
    if sys.argv[1:2] == ["--child-emulator"]:
        shape, items, concurrency, warm = sys.argv[2:6]
        row = measure_emulator(shape, int(items), int(concurrency), int(warm))
        print(json.dumps(row), flush=True)
        return
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a smoke test)")
    parser.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY)
    parser.add_argument("--synchronous", choices=SYNCHRONOUS_MODES, default="FULL")
    parser.add_argument(
        "--emulators",
        action="store_true",
        help="the map and the loop of 1,000 on the Firestore emulator instead",
    )
    parser.add_argument(
        "--io-ms",
        type=float,
        default=0.0,
        help="each item's work waits this long first (a remote call); map and loop of 1,000",
    )
    options = parser.parse_args()
    os.environ[IO_MS_VARIABLE] = str(options.io_ms)
    configs: tuple[Config, ...]
    if options.emulators:
        configs = QUICK_EMULATOR_CONFIGS if options.quick else EMULATOR_CONFIGS
        warmup: int | None = 20 if options.quick else EMULATOR_WARMUP
    else:
        configs = QUICK_CONFIGS if options.quick else IO_CONFIGS if options.io_ms else CONFIGS
        warmup = None
    measured: dict[Config, list[dict[str, Any]]] = {config: [] for config in configs}
    loads: list[float] = []
    for index in range(options.rounds):
        loads.append(os.getloadavg()[0])
        for config in configs if index % 2 == 0 else reversed(configs):
            row = measure_apart(config, options.concurrency, options.synchronous, warmup)
            row["round"] = index
            measured[config].append(row)
            print(json.dumps(row), flush=True)
    where = (
        f"Firestore emulator, dispatcher in process ({DEFAULT_WORKERS} delivering threads), "
        f"warm-up run of {warmup} items first"
        if options.emulators
        else f"EmbeddedRuntime, {DEFAULT_WORKERS} workers, synchronous={options.synchronous}"
    )
    print(
        f"\n{options.rounds} rounds; {where}; one step per delivery; map concurrency "
        f"{options.concurrency}; each item waits {options.io_ms:g} ms; medians (in bold, "
        "then each round)\n"
    )
    print(table(measured, emulator=options.emulators))
    print(
        "\nload average (1 min) at the start of each round: " + ", ".join(f"{x:.1f}" for x in loads)
    )


if __name__ == "__main__":
    main()
