"""Per-step cost of the durable runtime on the Google Cloud emulators.

Usage: python bench/gcp.py [--quick]

Starts the Firestore emulator and the Cloud Tasks emulator on 127.0.0.1 (with the test
suite's own launchers, stopped by PID at the end), and measures in one process, side by
side:

(a) the dispatcher: chains of quick nodes driven delivery by delivery through
    ``Dispatcher.deliver`` with a :class:`FirestoreStore` and a :class:`CloudTasksScheduler`
    (real gRPC to the tasks emulator). Each timed call is exactly one step; the next
    delivery is decoded from the body of the task the scheduler just created;
(b) the bare equivalent, written with the Google clients only: per step one Firestore
    transaction that reads the head document and writes the head plus one result document
    (the same fields, the same sizes as the store writes, read back from a run the store
    made), and one ``create_task`` with the same body, headers and name shape;
(c) Firestore document writes and tasks created per node, with ``StepBudget(max_steps=1)``
    and ``StepBudget(max_steps=10)``, counted at the Firestore client's ``Commit`` RPC
    (every transaction, batch and ``create`` goes through it) and at ``create_task``.

(a) and (b) are interleaved step by step (one dispatcher step, one bare step, ...; the
order flips every repetition), so drift (the emulator's JVM still warming up, a busy
neighbour) hits both alike. Each repetition is one chain of each; a side's figure is the
median over repetitions of its mean microseconds per step. If the dispatcher is slower
than 1.3x bare, a profiling pass (interleaved too) times the dispatcher's phases (each
store call, the scheduling, the rest) and the bare path's, and counts the Firestore RPCs
per step of each.

The task queue is paused while anything is timed and purged between repetitions: the
emulator is a Python process delivering one request at a time, and letting it POST our
tasks meanwhile would put its delivery work on the same cores as the timed loop.
``create_task`` is a real round trip either way. The tasks' URL is a local receiver
answering 200, in case a task is ever delivered.

Every number is printed as one JSON line, then markdown tables.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import json
import os
import platform
import statistics
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from google.cloud import firestore, tasks_v2
from google.cloud.firestore_v1.base_query import FieldFilter

from bench.workloads import chain_app
from refluxo.backends.gcp.cloud_tasks import CloudTasksScheduler, tasks_client_for_emulator
from refluxo.backends.gcp.firestore.layout import run_document_id
from refluxo.backends.gcp.firestore.store import FirestoreStore
from refluxo.runtime import App, Dispatcher, Outcome, RunService, StepBudget
from refluxo.runtime.ports import Delivery, HistoryReader, RunRecord, StepCommit
from tests.support.emulators import (
    EMULATOR_PROJECT,
    FIRESTORE_JAR,
    TASKS_EMULATOR,
    start_firestore,
    start_tasks,
)
from tests.support.receiver import HttpReceiver

QUEUE = f"projects/{EMULATOR_PROJECT}/locations/here/queues/bench"
TARGET_RATIO = 1.3
FIRESTORE_RPCS = ("begin_transaction", "batch_get_documents", "commit", "rollback", "run_query")


# -- the workflow --------------------------------------------------------------------------


# -- counting and timing -------------------------------------------------------------------


@dataclass
class RpcCounter:
    """Counts Firestore RPCs by method, and the documents written by ``Commit``.

    Wraps the methods of the client's GAPIC object (the one every transaction, batch, get
    and query of the Python client calls into), so the counts are the RPCs actually sent.
    """

    calls: Counter[str] = field(default_factory=Counter)
    writes: int = 0

    def install(self, client: firestore.Client) -> None:
        api = client._firestore_api  # the GAPIC client the public API calls into
        for name in FIRESTORE_RPCS:
            setattr(api, name, self._wrap(name, getattr(api, name)))

    def _wrap(self, name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            if name == "commit":
                request = kwargs.get("request") or (args[0] if args else {})
                self.writes += len(request["writes"])
            return method(*args, **kwargs)

        return counted

    def snapshot(self) -> tuple[Counter[str], int]:
        return Counter(self.calls), self.writes


class CountingTasks:
    """The tasks client's ``create_task``, counted; remembers the last task created."""

    def __init__(self, client: tasks_v2.CloudTasksClient) -> None:
        self.client = client
        self.created = 0
        self.last: tasks_v2.Task | None = None

    def create_task(self, *, parent: str, task: tasks_v2.Task) -> Any:
        response = self.client.create_task(parent=parent, task=task)
        self.created += 1
        self.last = task
        return response

    def get_task(self, *, name: str) -> Any:
        return self.client.get_task(name=name)

    def last_delivery(self) -> Delivery:
        """The delivery the last task carries, decoded as the HTTP handler would."""
        assert self.last is not None, "no task was created"
        body = json.loads(self.last.http_request.body)
        return Delivery(body["runId"], body["version"], body["dueAt"], body["hop"])


class Phases:
    """Accumulated seconds per named phase."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def timing(self, phase: str) -> Iterator[None]:
        before = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - before
            self.seconds[phase] = self.seconds.get(phase, 0.0) + elapsed

    def per_step(self, steps: int) -> dict[str, float]:
        """Microseconds per step of each phase, largest first."""
        ordered = sorted(self.seconds.items(), key=lambda item: -item[1])
        return {phase: round(seconds / steps * 1e6, 1) for phase, seconds in ordered}


# -- the shared setup ----------------------------------------------------------------------


@dataclass
class Bench:
    """Everything the measurements share: clients, counters, where tasks point."""

    app: App
    length: int
    firestore_client: firestore.Client
    tasks_client: tasks_v2.CloudTasksClient
    tasks: CountingTasks
    rpcs: RpcCounter
    prefix: str
    url: str
    loop: asyncio.AbstractEventLoop

    def store(self) -> FirestoreStore:
        return FirestoreStore(self.firestore_client, prefix=self.prefix)

    def scheduler(self) -> CloudTasksScheduler:
        return CloudTasksScheduler(self.tasks, queue_path=QUEUE, url=self.url)

    def dispatcher(
        self, budget: StepBudget, store: Any = None, scheduler: Any = None
    ) -> Dispatcher:
        return Dispatcher(
            self.app, store or self.store(), scheduler or self.scheduler(), budget=budget
        )

    def purge(self) -> None:
        """Drop the (paused) queue's tasks so it never grows across repetitions."""
        self.tasks_client.purge_queue(name=QUEUE)

    def create_task(self, run_id: str, version: int, phases: Phases, phase: str) -> None:
        """One task as the scheduler would create it, built with the tasks client alone."""
        body = json.dumps(
            {"runId": run_id, "version": version, "dueAt": 0, "hop": 0}, separators=(",", ":")
        ).encode()
        name = hashlib.sha256(f"{run_id}\x00{version}\x000\x000".encode()).hexdigest()[:32]
        with phases.timing(phase):
            self.tasks.create_task(
                parent=QUEUE,
                task=tasks_v2.Task(
                    name=f"{QUEUE}/tasks/{name}",
                    http_request=tasks_v2.HttpRequest(
                        http_method=tasks_v2.HttpMethod.POST,
                        url=self.url,
                        headers={"Content-Type": "application/json"},
                        body=body,
                    ),
                    dispatch_deadline=datetime.timedelta(seconds=60),
                ),
            )


@contextmanager
def paused_queue(bench: Bench) -> Iterator[None]:
    bench.tasks_client.pause_queue(name=QUEUE)
    try:
        yield
    finally:
        bench.purge()
        bench.tasks_client.resume_queue(name=QUEUE)


class Chain(Protocol):
    """A chain advanced one timed step at a time."""

    durations: list[float]

    def step(self) -> bool:
        """Execute the next step (timed into ``durations``); False once none is left."""
        ...


def lockstep(chains: Sequence[Chain]) -> None:
    """Advance the chains in turn, one step each, until all have finished."""
    active = list(chains)
    while active:
        active = [chain for chain in active if chain.step()]


# -- (a) the dispatcher --------------------------------------------------------------------


class DispatcherChain:
    """One chain run started through the service, then delivered step by step.

    Starting it (one create transaction, one task) is not timed. Each ``deliver`` is; the
    next delivery is the one in the body of the task the scheduler just created.
    """

    def __init__(self, bench: Bench, dispatcher: Dispatcher, run_id: str | None = None) -> None:
        self.bench = bench
        self.dispatcher = dispatcher
        self.run_id = run_id or f"d{uuid.uuid4().hex[:16]}"
        started = RunService(dispatcher).start("chain", {"k": 1}, run_id=self.run_id)
        assert started.created
        self.delivery: Delivery | None = bench.tasks.last_delivery()
        self.durations: list[float] = []
        self.steps = 0

    def step(self) -> bool:
        if self.delivery is None:
            return False
        before = time.perf_counter()
        result = self.bench.loop.run_until_complete(self.dispatcher.deliver(self.delivery))
        self.durations.append(time.perf_counter() - before)
        assert result.outcome == Outcome.COMMITTED, result
        assert result.record is not None
        self.steps += result.steps
        if result.record.status == "completed":
            assert self.steps == self.bench.length, (self.steps, self.bench.length)
            self.delivery = None
            return False
        self.delivery = self.bench.tasks.last_delivery()
        assert self.delivery.version == result.record.version, (self.delivery, result.record)
        return True

    def run(self) -> DispatcherChain:
        while self.step():
            pass
        return self


# -- (b) the bare equivalent ---------------------------------------------------------------


@dataclass
class Template:
    """The exact fields the store writes per step, read back from a run it made."""

    head_update: dict[str, Any]
    head_create: dict[str, Any]
    result: dict[str, Any]


def read_template(bench: Bench, run_id: str) -> Template:
    """The head and a mid-run result document the store wrote for ``run_id``."""
    runs = bench.firestore_client.collection(f"{bench.prefix}_runs")
    run = runs.document(run_document_id(run_id))
    head = run.get().to_dict()
    assert head is not None
    middle = bench.length // 2
    (result,) = run.collection("results").where(filter=FieldFilter("seq", "==", middle)).get()
    result_fields = result.to_dict()
    assert result_fields is not None
    updated = ("status", "version", "head", "pending", "resultCount", "updatedAt", "recentCommits")
    return Template(
        head_update={name: head[name] for name in updated},
        head_create={**head, "version": 0, "resultCount": 0},
        result=result_fields,
    )


class BareChain:
    """Per step: a transaction (read head, check version, write head + result), a task."""

    TRANSACTION = "bare: transaction (begin + head get + commit)"
    TASK = "bare: create_task"

    def __init__(self, bench: Bench, template: Template, phases: Phases | None = None) -> None:
        self.bench = bench
        self.template = template
        self.phases = phases or Phases()
        self.run_id = f"b{uuid.uuid4().hex[:16]}"
        self.head = bench.firestore_client.collection(f"{bench.prefix}_bare").document(self.run_id)
        self.head.create(template.head_create)  # not timed, like a run's start
        self.seq = 0
        self.durations: list[float] = []

    def _transaction(self, transaction: Any, seq: int) -> None:
        found = self.head.get(transaction=transaction).to_dict()
        if found is None or found["version"] != seq:
            raise AssertionError(f"bare head at {found and found['version']}, expected {seq}")
        transaction.update(
            self.head,
            {
                **self.template.head_update,
                "version": seq + 1,
                "resultCount": seq + 1,
                "updatedAt": int(time.time() * 1000),
            },
        )
        transaction.set(
            self.head.collection("results").document(f"{seq:012d}"),
            {**self.template.result, "seq": seq, "nodeIndex": 0, "nodeId": f"n{seq}"},
        )

    def step(self) -> bool:
        if self.seq >= self.bench.length:
            return False
        seq = self.seq
        before = time.perf_counter()
        with self.phases.timing(self.TRANSACTION):
            transactional = firestore.transactional(self._transaction)
            transactional(self.bench.firestore_client.transaction(), seq)
        self.bench.create_task(self.run_id, seq + 1, self.phases, self.TASK)
        self.durations.append(time.perf_counter() - before)
        self.seq += 1
        return True


# -- (c) writes and tasks per node ---------------------------------------------------------


def per_node_counts(bench: Bench, budget: StepBudget) -> dict[str, Any]:
    """Firestore RPCs, documents written and tasks created per node for one chain.

    The run's start (one create transaction, one definition ``create``, one task) is per
    run, not per node, and is left out.
    """
    chain = DispatcherChain(bench, bench.dispatcher(budget))
    calls_before, writes_before = bench.rpcs.snapshot()
    tasks_before = bench.tasks.created
    chain.run()
    calls_after, writes_after = bench.rpcs.snapshot()
    nodes = chain.steps
    return {
        "measure": "per_node",
        "batch": budget.max_steps,
        "nodes": nodes,
        "deliveries": len(chain.durations),
        "us_per_node": round(sum(chain.durations) / nodes * 1e6, 1),
        "firestore_writes_per_node": round((writes_after - writes_before) / nodes, 3),
        "tasks_per_node": round((bench.tasks.created - tasks_before) / nodes, 3),
        "firestore_rpcs_per_node": round(sum((calls_after - calls_before).values()) / nodes, 3),
    }


# -- profiling the dispatcher --------------------------------------------------------------


class TimedHistory:
    """A history reader with each read timed."""

    def __init__(self, inner: HistoryReader, phases: Phases) -> None:
        self.inner = inner
        self.phases = phases

    def count(self, node_id: str) -> int:
        with self.phases.timing("history reads (node counter get)"):
            return self.inner.count(node_id)

    def get(self, node_id: str, index: int) -> Any:
        with self.phases.timing("history reads (result query)"):
            return self.inner.get(node_id, index)

    def all(self, node_id: str) -> Any:
        with self.phases.timing("history reads (result query)"):
            return self.inner.all(node_id)

    def node_ids(self) -> list[str]:
        with self.phases.timing("history reads (node list)"):
            return self.inner.node_ids()


class TimedStore:
    """The Firestore store with each call the dispatcher makes timed."""

    def __init__(self, inner: FirestoreStore, phases: Phases) -> None:
        self.inner = inner
        self.phases = phases

    def load_run(self, run_id: str) -> RunRecord | None:
        with self.phases.timing("load_run (head get, outside the transaction)"):
            return self.inner.load_run(run_id)

    def commit(self, commit: StepCommit) -> Any:
        with self.phases.timing("commit transaction (begin + head get + commit)"):
            return self.inner.commit(commit)

    def history(self, record: RunRecord) -> TimedHistory:
        return TimedHistory(self.inner.history(record), self.phases)

    def get_definition(self, version: str) -> Any:
        with self.phases.timing("definition read"):
            return self.inner.get_definition(version)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class TimedScheduler:
    def __init__(self, inner: CloudTasksScheduler, phases: Phases) -> None:
        self.inner = inner
        self.phases = phases

    def schedule(self, delivery: Delivery) -> None:
        with self.phases.timing("create_task"):
            self.inner.schedule(delivery)


class Counted:
    """A chain whose steps' Firestore RPCs are counted apart from the other chains'."""

    def __init__(self, chain: Chain, rpcs: RpcCounter, into: Counter[str]) -> None:
        self.chain = chain
        self.rpcs = rpcs
        self.into = into
        self.durations = chain.durations

    def step(self) -> bool:
        before, _ = self.rpcs.snapshot()
        more = self.chain.step()
        self.into.update(self.rpcs.snapshot()[0] - before)
        return more


def profile(bench: Bench, template: Template, rounds: int) -> dict[str, Any]:
    """Phases and Firestore RPCs per step of the dispatcher and of the bare path.

    The two advance in lockstep, like the main measurement.
    """
    phases, bare_phases = Phases(), Phases()
    dispatcher = bench.dispatcher(
        StepBudget(),
        store=TimedStore(bench.store(), phases),
        scheduler=TimedScheduler(bench.scheduler(), phases),
    )
    rpcs: dict[str, Counter[str]] = {
        "dispatcher": Counter(),
        "bare": Counter(),
    }
    durations: dict[str, list[float]] = {"dispatcher": [], "bare": []}
    for _ in range(rounds):
        # The dispatcher's run starts through the untimed service call in its constructor.
        chains: dict[str, Chain] = {
            "dispatcher": DispatcherChain(bench, dispatcher),
            "bare": BareChain(bench, template, bare_phases),
        }
        lockstep([Counted(chain, bench.rpcs, rpcs[name]) for name, chain in chains.items()])
        for name, chain in chains.items():
            durations[name] += chain.durations
        bench.purge()
    steps = len(durations["dispatcher"])
    breakdown = phases.per_step(steps)
    rest = sum(durations["dispatcher"]) - sum(phases.seconds.values())
    breakdown["engine + dispatcher CPU (the rest)"] = round(rest / steps * 1e6, 1)
    return {
        "measure": "profile",
        "steps": steps,
        "us_per_step": {name: round(mean_us(values), 1) for name, values in durations.items()},
        "phases_us_per_step": {
            "dispatcher": breakdown,
            "bare": bare_phases.per_step(len(durations["bare"])),
        },
        "firestore_rpcs_per_step": {
            name: {rpc: round(count / len(durations[name]), 3) for rpc, count in sorted(c.items())}
            for name, c in rpcs.items()
        },
    }


# -- the run -------------------------------------------------------------------------------


def mean_us(durations: list[float]) -> float:
    return sum(durations) / len(durations) * 1e6


def machine_notes() -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "measure": "machine",
        "cpu": model,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "firestore_emulator": str(FIRESTORE_JAR),
        "tasks_emulator": str(TASKS_EMULATOR),
        "firestore_client": firestore.__version__,
        "tasks_client": tasks_v2.__version__,
    }


def emit(row: dict[str, Any]) -> None:
    print(json.dumps(row), flush=True)


def measure(bench: Bench, repetitions: int, warmup: int) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    with paused_queue(bench):
        dispatcher = bench.dispatcher(StepBudget())
        DispatcherChain(bench, dispatcher, "template").run()
        template = read_template(bench, "template")
        bench.purge()
        # The emulator's JVM keeps getting faster for a few thousand requests: warm-up
        # rounds (printed, not counted) until the figures settle.
        for index in range(warmup + repetitions):
            pair: list[Chain] = [DispatcherChain(bench, dispatcher), BareChain(bench, template)]
            lockstep(pair if index % 2 == 0 else pair[::-1])
            bench.purge()
            row = {
                "measure": "warmup" if index < warmup else "repetition",
                "index": index if index < warmup else index - warmup,
                "dispatcher_us_per_step": round(mean_us(pair[0].durations), 1),
                "bare_us_per_step": round(mean_us(pair[1].durations), 1),
            }
            emit(row)
            if index >= warmup:
                rows.setdefault("repetitions", {"measure": "repetitions", "rows": []})
                rows["repetitions"]["rows"].append(row)

        reps = rows["repetitions"]["rows"]
        dispatcher_median = statistics.median(r["dispatcher_us_per_step"] for r in reps)
        bare_median = statistics.median(r["bare_us_per_step"] for r in reps)
        ratio = dispatcher_median / bare_median
        rows["summary"] = {
            "measure": "per_step",
            "dispatcher_us_per_step": round(dispatcher_median, 1),
            "bare_us_per_step": round(bare_median, 1),
            "ratio": round(ratio, 3),
            "ratio_per_repetition": [
                round(r["dispatcher_us_per_step"] / r["bare_us_per_step"], 3) for r in reps
            ],
            "target": TARGET_RATIO,
            "met": ratio <= TARGET_RATIO,
            "payload_bytes": {
                "head_fields_updated": sorted(template.head_update),
                "head_json": len(template.head_update["head"]),
                "result_json": len(template.result["result"]),
            },
        }
        emit(rows["summary"])

        for batch in (1, 10):
            rows[f"batch{batch}"] = per_node_counts(bench, StepBudget(max_steps=batch))
            emit(rows[f"batch{batch}"])
            bench.purge()

        if ratio > TARGET_RATIO:
            rows["profile"] = profile(bench, template, rounds=3)
            emit(rows["profile"])
    return rows


def table(rows: dict[str, dict[str, Any]], notes: dict[str, Any], length: int, reps: int) -> None:
    summary = rows["summary"]
    verdict = "met" if summary["met"] else "missed"
    print("\n| measure | value |\n|---|---:|")
    print(
        f"| dispatcher, µs / step (chain of {length}, median of {reps}) | "
        f"{summary['dispatcher_us_per_step']} |"
    )
    print(f"| bare transaction + create_task, µs / step | {summary['bare_us_per_step']} |")
    print(f"| ratio dispatcher / bare (target ≤ {TARGET_RATIO}) | {summary['ratio']} ({verdict}) |")
    for batch in (1, 10):
        row = rows[f"batch{batch}"]
        print(f"| batch {batch}: µs / node | {row['us_per_node']} |")
        writes = row["firestore_writes_per_node"]
        print(f"| batch {batch}: Firestore document writes / node | {writes} |")
        print(f"| batch {batch}: tasks created / node | {row['tasks_per_node']} |")
        print(f"| batch {batch}: Firestore RPCs / node | {row['firestore_rpcs_per_node']} |")
    print("| bare: Firestore document writes / step | 2 |")
    print("| bare: tasks created / step | 1 |")
    profiled = rows.get("profile")
    if profiled is not None:
        print("\n| profiling pass | µs / step |\n|---|---:|")
        for name, phases in profiled["phases_us_per_step"].items():
            for phase, value in phases.items():
                label = phase if name != "dispatcher" else f"dispatcher: {phase}"
                print(f"| {label} | {value} |")
            print(f"| **{name}: total** | **{profiled['us_per_step'][name]}** |")
        print("\n| Firestore RPCs / step | dispatcher | bare |\n|---|---:|---:|")
        counts = profiled["firestore_rpcs_per_step"]
        for rpc in sorted(set().union(*(set(c) for c in counts.values()))):
            cells = " | ".join(str(counts[name].get(rpc, 0)) for name in counts)
            print(f"| {rpc} | {cells} |")
    print(f"\nmachine: {notes['cpus']} CPUs ({notes['cpu']}), Python {notes['python']}")


@contextmanager
def emulated_clients() -> Iterator[tuple[firestore.Client, tasks_v2.CloudTasksClient, str]]:
    """The Firestore and Cloud Tasks emulators, started on 127.0.0.1 and stopped at the end,
    with a client of each and the URL of a local receiver for the tasks' requests."""
    firestore_emulator = start_firestore()
    try:
        tasks_emulator = start_tasks(QUEUE, max_retries=0)
    except BaseException:
        firestore_emulator.process.stop()
        raise
    try:
        os.environ["FIRESTORE_EMULATOR_HOST"] = firestore_emulator.host_port
        try:
            client = firestore.Client(project=EMULATOR_PROJECT)
        finally:
            del os.environ["FIRESTORE_EMULATOR_HOST"]
        with (
            HttpReceiver() as receiver,
            tasks_client_for_emulator(tasks_emulator.host_port) as tasks_client,
        ):
            yield client, tasks_client, receiver.url
    finally:
        tasks_emulator.process.stop()
        firestore_emulator.process.stop()


def main() -> None:
    quick = "--quick" in sys.argv
    length = 50 if quick else 200
    repetitions = 3 if quick else 7
    warmup = 2 if quick else 8
    notes = machine_notes()
    emit(notes)
    with emulated_clients() as (client, tasks_client, url):
        rpcs = RpcCounter()
        rpcs.install(client)
        loop = asyncio.new_event_loop()
        bench = Bench(
            app=chain_app(length),
            length=length,
            firestore_client=client,
            tasks_client=tasks_client,
            tasks=CountingTasks(tasks_client),
            rpcs=rpcs,
            prefix=f"bench{uuid.uuid4().hex[:8]}",
            url=url,
            loop=loop,
        )
        try:
            rows = measure(bench, repetitions, warmup)
        finally:
            loop.close()
    table(rows, notes, length, repetitions)


if __name__ == "__main__":
    main()
