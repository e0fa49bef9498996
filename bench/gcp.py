"""Per-step cost of the durable runtime on the Google Cloud emulators.

Usage: python bench/gcp.py [--quick]

Starts the Firestore emulator and the Cloud Tasks emulator on 127.0.0.1 (with the test
suite's own launchers, stopped by PID at the end), and measures in one process, side by
side, two figures.

**Direct** (the dispatcher against the same work written by hand):

(a) the dispatcher: chains of quick nodes driven delivery by delivery through
    ``Dispatcher.deliver`` with a :class:`FirestoreStore` and a :class:`CloudTasksScheduler`
    (real gRPC to both emulators). Each timed call is exactly one step; the next delivery
    is decoded from the body of the task the scheduler just created;
(b) the bare equivalent, written with the Google clients only, doing per step what the
    store and the scheduler send: one get of the head (``BatchGetDocuments``), one batch
    (``Commit``) that updates the head under the precondition ``last_update_time`` = the
    update time just read and creates the step's result document, and one ``create_task``
    with the same body, headers and name shape (none after the last step, like the
    dispatcher). The head and result fields it writes are the very ones the store wrote
    for each step of a run it made (recorded from that run's batches), so the documents,
    their names' lengths, their sizes and the preconditions are the same.

**Pushed** (what every production step pays on top: the HTTP handler and the token check):

(c) the step function as ``main.py`` builds it (``functions_framework.create_app`` of its
    ``step`` target: Flask, the product's HTTP layer, ``OidcCheck``), served on 127.0.0.1,
    each step one HTTP POST of the body of the task the last step created, as Cloud Tasks
    pushes it, with an RS256 token signed for the tasks invoker by a local issuer whose
    certificates the function fetches (once: they are cached) and verifies (a token for
    another audience is pushed once at the end and must be refused with 401). Its log
    line per delivery is formatted (JSON, as on Google Cloud) and written to the null
    device;
(d) the bare equivalent: the same POST (same body, same headers and token, unread) to a
    trivial function served the same way (functions-framework's Flask wrapping) that
    parses the body, does (b) and answers the same JSON.

Both functions run in this process, each behind werkzeug's threaded server on a port of
127.0.0.1, each pushed to over one kept-alive HTTP/1.1 connection; tokens are minted
before the clock starts (Google mints them, not the function).

Before anything is timed, one untimed pair of chains per figure records every RPC each
step sends (Firestore at the GAPIC client every get, batch and transaction goes through;
Cloud Tasks at the client's methods) and the run stops unless both sides send the same
RPCs by method at every step, and the same document writes (operation, precondition,
field mask; bytes within 1%) in each ``Commit``. The timed repetitions are recorded and
checked the same way, and the counts per step by method are printed.

Besides each step's wall time, the CPU time of this process during the step is recorded
(the clients, the functions served in it, the gRPC threads; not the emulators, which are
other processes): on a shared machine it does not grow with the wait for a core.

The two sides of a figure are interleaved step by step (one dispatcher step, one bare
step, ...; the order flips every repetition), so drift (the emulator's JVM still warming
up, a busy neighbour) hits both alike. Each repetition is one chain of each; a side's
figure is the median over repetitions of its mean microseconds per step, and each
repetition's ratio is printed too. If the direct ratio is above 1.3, a profiling pass
(interleaved too) times the dispatcher's phases and the bare path's.

The task queue is paused while anything is timed and purged between repetitions: the
emulator is a Python process delivering one request at a time, and letting it POST our
tasks meanwhile would put its delivery work on the same cores as the timed loop.
``create_task`` is a real round trip either way. In the direct figure the tasks' URL is a
local receiver answering 200, in case a task is ever delivered.

Every number is printed as one JSON line, then markdown tables.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import http.client
import json
import logging
import os
import platform
import statistics
import sys
import threading
import time
import types
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol, cast
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import flask
import functions_framework
from functions_framework import _function_registry, execution_id
from google.cloud import firestore, tasks_v2
from google.cloud.firestore_v1 import types as firestore_types
from werkzeug.serving import WSGIRequestHandler, make_server

from bench.workloads import chain_app
from refluxo.backends.gcp.cloud_tasks import CloudTasksScheduler, tasks_client_for_emulator
from refluxo.backends.gcp.firestore.store import FirestoreStore
from refluxo.host.compose import Deployment
from refluxo.runtime import App, Dispatcher, Outcome, RunService, StepBudget
from refluxo.runtime.ports import Delivery, HistoryReader, RunRecord, StepCommit
from tests.support.emulators import (
    EMULATOR_PROJECT,
    FIRESTORE_JAR,
    TASKS_EMULATOR,
    free_port,
    start_firestore,
    start_tasks,
)
from tests.support.firestore_rpcs import FIRESTORE_RPCS
from tests.support.oidc_issuer import TASKS_SERVICE_ACCOUNT, OidcIssuer
from tests.support.receiver import HttpReceiver

REGION = "here"
QUEUE_ID = "bench"
QUEUE = f"projects/{EMULATOR_PROJECT}/locations/{REGION}/queues/{QUEUE_ID}"
TARGET_RATIO = 1.3
MAIN = Path(__file__).resolve().parent.parent / "main.py"
CERTS_LABEL = "bench"
WORKLOAD_MODULE = "bench_gcp_workload"
"""The module ``REFLUXO_APP`` names for the step function: registered here, holding the
benchmark's chain app, so that ``main.py`` imports it as it imports any app."""

GRPC_METHODS = {
    "batch_get_documents": "Firestore.BatchGetDocuments",
    "begin_transaction": "Firestore.BeginTransaction",
    "commit": "Firestore.Commit",
    "rollback": "Firestore.Rollback",
    "run_query": "Firestore.RunQuery",
    "create_task": "CloudTasks.CreateTask",
    "get_task": "CloudTasks.GetTask",
}
"""The gRPC method each counted client method sends."""

STEP_OUTCOME = {"outcome": "committed", "steps": 1}
"""What the step route answers for a delivery that committed one step (the bare function
answers the same bytes)."""


# -- counting --------------------------------------------------------------------------------


@dataclass(frozen=True)
class WriteShape:
    """One document write of a ``Commit`` RPC, as sent.

    ``operation`` is the ``Write`` message's (``update`` for creates and updates alike),
    ``precondition`` its ``current_document`` condition (``exists`` for a create,
    ``update_time`` for a guarded update), ``mask`` its update mask (empty for a create:
    the whole document is written), ``depth`` the document's path segments (2: a head,
    4: a result) and ``size`` the bytes of the message.
    """

    operation: str
    precondition: str
    mask: tuple[str, ...]
    depth: int
    size: int

    def kind(self) -> tuple[str, str, tuple[str, ...], int]:
        """Everything but the size: what must be equal on both sides."""
        return self.operation, self.precondition, self.mask, self.depth


def write_shape(write: Any) -> WriteShape:
    raw = firestore_types.Write.pb(write) if isinstance(write, firestore_types.Write) else write
    operation = raw.WhichOneof("operation") or "none"
    condition = (
        raw.current_document.WhichOneof("condition_type")
        if raw.HasField("current_document")
        else None
    )
    name = raw.update.name if operation == "update" else str(getattr(raw, operation, ""))
    return WriteShape(
        operation=operation,
        precondition=condition or "none",
        mask=tuple(sorted(raw.update_mask.field_paths)),
        depth=len(name.split("/documents/", 1)[-1].split("/")),
        size=raw.ByteSize(),
    )


@dataclass
class RpcCounter:
    """Counts Firestore RPCs by method, and records the document writes each ``Commit`` sends.

    Wraps the methods of the client's GAPIC object (the one every transaction, batch, get
    and query of the Python client calls into), so the counts are the RPCs actually sent.
    """

    calls: Counter[str] = field(default_factory=Counter)
    writes: int = 0
    shapes: list[WriteShape] = field(default_factory=list)

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
                self.shapes.extend(write_shape(write) for write in request["writes"])
            return method(*args, **kwargs)

        return counted

    def snapshot(self) -> tuple[Counter[str], int]:
        return Counter(self.calls), self.writes


class CountingTasks:
    """The tasks client's ``create_task`` and ``get_task``, counted; remembers the last task
    created and the size of each."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.created = 0
        self.looked_up = 0
        self.sizes: list[int] = []
        self.last: tasks_v2.Task | None = None

    def create_task(self, *, parent: str, task: tasks_v2.Task) -> Any:
        response = self.client.create_task(parent=parent, task=task)
        self.created += 1
        self.sizes.append(tasks_v2.Task.pb(task).ByteSize())
        self.last = task
        return response

    def get_task(self, *, name: str) -> Any:
        self.looked_up += 1
        return self.client.get_task(name=name)

    def last_delivery(self) -> Delivery:
        """The delivery the last task carries, decoded as the HTTP handler would."""
        assert self.last is not None, "no task was created"
        body = json.loads(self.last.http_request.body)
        return Delivery(body["runId"], body["version"], body["dueAt"], body["hop"])


@dataclass(frozen=True)
class StepRpcs:
    """What one step sent: RPCs by gRPC method, the writes of its commits, its tasks' bytes."""

    methods: Mapping[str, int]
    writes: tuple[WriteShape, ...]
    task_bytes: int


@dataclass
class Meter:
    """Where one side's RPCs are counted: its Firestore client's counter and its tasks client."""

    rpcs: RpcCounter
    tasks: CountingTasks

    def mark(self) -> tuple[Counter[str], int, int, int, int]:
        return (
            Counter(self.rpcs.calls),
            len(self.rpcs.shapes),
            self.tasks.created,
            self.tasks.looked_up,
            len(self.tasks.sizes),
        )

    def since(self, mark: tuple[Counter[str], int, int, int, int]) -> StepRpcs:
        calls, shapes, created, looked_up, sizes = mark
        counts = self.rpcs.calls - calls
        counts["create_task"] = self.tasks.created - created
        counts["get_task"] = self.tasks.looked_up - looked_up
        return StepRpcs(
            methods={GRPC_METHODS[name]: n for name, n in sorted(counts.items()) if n},
            writes=tuple(self.rpcs.shapes[shapes:]),
            task_bytes=sum(self.tasks.sizes[sizes:]),
        )


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

    def meter(self) -> Meter:
        return Meter(self.rpcs, self.tasks)

    def purge(self) -> None:
        """Drop the (paused) queue's tasks so it never grows across repetitions."""
        self.tasks_client.purge_queue(name=QUEUE)


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
    cpu: list[float]

    def step(self) -> bool:
        """Execute the next step, its wall time into ``durations`` and this process's CPU
        time into ``cpu``; False once none is left."""
        ...


def lockstep(chains: Sequence[Chain]) -> None:
    """Advance the chains in turn, one step each, until all have finished."""
    active = list(chains)
    while active:
        active = [chain for chain in active if chain.step()]


def new_run_id(side: str) -> str:
    """A run id of 17 characters whatever the side, so every head holds as many bytes."""
    return f"{side}{uuid.uuid4().hex[:16]}"


# -- (a) the dispatcher --------------------------------------------------------------------


class DispatcherChain:
    """One chain run started through the service, then delivered step by step.

    Starting it (one create transaction, one task) is not timed. Each ``deliver`` is; the
    next delivery is the one in the body of the task the scheduler just created.
    """

    def __init__(self, bench: Bench, dispatcher: Dispatcher, run_id: str | None = None) -> None:
        self.bench = bench
        self.dispatcher = dispatcher
        self.run_id = run_id or new_run_id("d")
        started = RunService(dispatcher).start("chain", {"k": 1}, run_id=self.run_id)
        assert started.created
        self.delivery: Delivery | None = bench.tasks.last_delivery()
        self.durations: list[float] = []
        self.cpu: list[float] = []
        self.steps = 0

    def step(self) -> bool:
        if self.delivery is None:
            return False
        cpu = time.process_time()
        before = time.perf_counter()
        result = self.bench.loop.run_until_complete(self.dispatcher.deliver(self.delivery))
        self.durations.append(time.perf_counter() - before)
        self.cpu.append(time.process_time() - cpu)
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


@dataclass(frozen=True)
class StepWrites:
    """What the store wrote for one step: the head's update and the result documents."""

    expected_version: int
    head: dict[str, Any]
    results: tuple[tuple[str, dict[str, Any]], ...]
    next_version: int | None
    """The version the next delivery carries; None after the last step (no task)."""


@dataclass(frozen=True)
class Template:
    """A run the store made, step by step: the head it created, then each step's writes."""

    initial: dict[str, Any]
    steps: tuple[StepWrites, ...]


class RecordingBatch:
    """A write batch that records what it is given before passing it on."""

    def __init__(self, batch: Any, commits: list[list[tuple[str, Any, dict[str, Any]]]]) -> None:
        self.batch = batch
        self.commits = commits
        self.operations: list[tuple[str, Any, dict[str, Any]]] = []

    def update(self, reference: Any, field_updates: dict[str, Any], option: Any = None) -> Any:
        self.operations.append(("update", reference, dict(field_updates)))
        return self.batch.update(reference, field_updates, option=option)

    def create(self, reference: Any, document_data: dict[str, Any]) -> Any:
        self.operations.append(("create", reference, dict(document_data)))
        return self.batch.create(reference, document_data)

    def commit(self, **kwargs: Any) -> Any:
        self.commits.append(self.operations)
        return self.batch.commit(**kwargs)


class RecordingClient:
    """The Firestore client with its batches recorded: what each commit of the store wrote."""

    def __init__(self, client: firestore.Client) -> None:
        self.client = client
        self.commits: list[list[tuple[str, Any, dict[str, Any]]]] = []

    def batch(self) -> RecordingBatch:
        return RecordingBatch(self.client.batch(), self.commits)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


def head_reference(client: firestore.Client, prefix: str, run_id: str) -> Any:
    """Where a run's head is: named by a hash of the run id, as the store names it."""
    name = hashlib.sha256(run_id.encode()).hexdigest()[:32]
    return client.collection(f"{prefix}_runs").document(name)


def record_template(bench: Bench) -> Template:
    """Run one chain through the dispatcher with its store's batches recorded (untimed)."""
    recording = RecordingClient(bench.firestore_client)
    store = FirestoreStore(cast(firestore.Client, recording), prefix=bench.prefix)
    chain = DispatcherChain(bench, bench.dispatcher(StepBudget(), store=store), new_run_id("t"))
    initial = head_reference(bench.firestore_client, bench.prefix, chain.run_id).get().to_dict()
    assert initial is not None
    chain.run()
    assert len(recording.commits) == bench.length, len(recording.commits)
    steps: list[StepWrites] = []
    version = int(initial["version"])
    for index, operations in enumerate(recording.commits):
        (kind, _, head), *results = operations
        assert kind == "update", operations
        assert all(op == "create" for op, _, _ in results), operations
        last = index == len(recording.commits) - 1
        steps.append(
            StepWrites(
                expected_version=version,
                head=head,
                results=tuple((reference.id, fields) for _, reference, fields in results),
                next_version=None if last else int(head["version"]),
            )
        )
        version = int(head["version"])
    return Template(initial, tuple(steps))


@dataclass(frozen=True)
class TaskShape:
    """What every task of a side carries: where it POSTs, its deadline, its OIDC identity."""

    url: str
    deadline_s: float
    service_account: str | None = None
    audience: str | None = None

    @classmethod
    def of(cls, scheduler: CloudTasksScheduler, url: str | None = None) -> TaskShape:
        """The shape of ``scheduler``'s tasks (POSTing to ``url`` if given)."""
        return cls(
            url or scheduler.url,
            scheduler.dispatch_deadline_s,
            scheduler.service_account_email,
            scheduler.audience,
        )

    def task(self, run_id: str, version: int) -> tasks_v2.Task:
        """The task delivering ``run_id`` at ``version``, built with the tasks client alone."""
        body = json.dumps(
            {"runId": run_id, "version": version, "dueAt": 0, "hop": 0}, separators=(",", ":")
        ).encode()
        name = hashlib.sha256(f"{run_id}\x00{version}\x000\x000".encode()).hexdigest()[:32]
        request = tasks_v2.HttpRequest(
            http_method=tasks_v2.HttpMethod.POST,
            url=self.url,
            headers={"Content-Type": "application/json"},
            body=body,
        )
        if self.service_account is not None:
            request.oidc_token = tasks_v2.OidcToken(
                service_account_email=self.service_account, audience=self.audience or ""
            )
        return tasks_v2.Task(
            name=f"{QUEUE}/tasks/{name}",
            http_request=request,
            dispatch_deadline=datetime.timedelta(seconds=self.deadline_s),
        )


class BareRun:
    """One run's head and results, written step by step with the Google clients only.

    Per step: get the head, check its version, then one batch: the head updated under the
    precondition ``last_update_time`` (the update time just read) and the step's result
    created (precondition: it does not exist); then create the next task. The fields are
    the template's, step for step.
    """

    GET = "bare: head get (BatchGetDocuments)"
    COMMIT = "bare: guarded batch (Commit)"
    TASK = "bare: create_task"

    def __init__(
        self,
        bench: Bench,
        template: Template,
        tasks: CountingTasks,
        shape: TaskShape,
        phases: Phases | None = None,
    ) -> None:
        self.client = bench.firestore_client
        self.template = template
        self.tasks = tasks
        self.shape = shape
        self.phases = phases or Phases()
        self.run_id = new_run_id("b")
        self.head = head_reference(self.client, bench.prefix, self.run_id)
        self.results = self.head.collection("results")
        self.head.create(template.initial)  # not timed, like a run's start
        self.seq = 0

    @property
    def done(self) -> bool:
        return self.seq >= len(self.template.steps)

    def first_task(self) -> tasks_v2.Task:
        """Schedule the first delivery, as a run's start does (not timed)."""
        task = self.shape.task(self.run_id, self.template.steps[0].expected_version)
        self.tasks.create_task(parent=QUEUE, task=task)
        return task

    def step(self, version: int) -> None:
        """Execute the delivery of ``version``; raises if the head is not at it."""
        writes = self.template.steps[self.seq]
        with self.phases.timing(self.GET):
            found = self.head.get()
        data = found.to_dict()
        if data is None or data["version"] != version:
            raise AssertionError(f"bare head at {data and data['version']}, expected {version}")
        with self.phases.timing(self.COMMIT):
            batch = self.client.batch()
            guard = self.client.write_option(last_update_time=found.update_time)
            batch.update(self.head, writes.head, option=guard)
            for name, document in writes.results:
                batch.create(self.results.document(name), document)
            batch.commit(retry=None)
        self.seq += 1
        if writes.next_version is not None:
            with self.phases.timing(self.TASK):
                task = self.shape.task(self.run_id, writes.next_version)
                self.tasks.create_task(parent=QUEUE, task=task)


class BareChain:
    """A bare run driven directly, one timed step at a time."""

    def __init__(self, run: BareRun) -> None:
        self.run = run
        self.durations: list[float] = []
        self.cpu: list[float] = []

    def step(self) -> bool:
        if self.run.done:
            return False
        version = self.run.template.steps[self.run.seq].expected_version
        cpu = time.process_time()
        before = time.perf_counter()
        self.run.step(version)
        self.durations.append(time.perf_counter() - before)
        self.cpu.append(time.process_time() - cpu)
        return not self.run.done


# -- checking that both sides send the same RPCs ----------------------------------------------


class Recorded:
    """A chain whose every step's RPCs are recorded (outside the step's timing)."""

    def __init__(self, chain: Chain, meter: Meter) -> None:
        self.chain = chain
        self.meter = meter
        self.durations = chain.durations
        self.cpu = chain.cpu
        self.steps: list[StepRpcs] = []

    def step(self) -> bool:
        mark = self.meter.mark()
        timed = len(self.durations)
        more = self.chain.step()
        if len(self.durations) > timed:
            self.steps.append(self.meter.since(mark))
        return more


def same_rpcs(dispatcher: Sequence[StepRpcs], bare: Sequence[StepRpcs]) -> None:
    """Raise unless both sides sent, step for step, the same RPCs and the same writes."""
    assert len(dispatcher) == len(bare), (len(dispatcher), len(bare))
    for index, (ours, theirs) in enumerate(zip(dispatcher, bare, strict=True)):
        assert ours.methods == theirs.methods, (
            f"step {index}: the dispatcher sent {dict(ours.methods)}, "
            f"the bare path {dict(theirs.methods)}"
        )
        assert [w.kind() for w in ours.writes] == [w.kind() for w in theirs.writes], (
            f"step {index}: the dispatcher wrote {ours.writes}, the bare path {theirs.writes}"
        )
        ours_bytes = sum(w.size for w in ours.writes)
        theirs_bytes = sum(w.size for w in theirs.writes)
        assert abs(ours_bytes - theirs_bytes) <= 0.01 * ours_bytes, (
            f"step {index}: the dispatcher's Commit carried {ours_bytes} bytes of writes, "
            f"the bare path's {theirs_bytes}"
        )


def rpcs_per_step(steps: Sequence[StepRpcs]) -> dict[str, Any]:
    """Mean RPCs per step by gRPC method, documents written and bytes sent per step."""
    methods: Counter[str] = Counter()
    for step in steps:
        methods.update(step.methods)
    count = len(steps)
    writes = [write for step in steps for write in step.writes]
    return {
        "steps": count,
        "rpcs": {name: round(n / count, 3) for name, n in sorted(methods.items())},
        "documents_written": round(len(writes) / count, 3),
        "write_kinds": sorted(
            {f"{w.operation} ({w.precondition}), depth {w.depth}" for w in writes}
        ),
        "commit_write_bytes": round(sum(w.size for w in writes) / count, 1),
        "task_bytes": round(sum(step.task_bytes for step in steps) / count, 1),
    }


# -- (c) and (d): delivered as Cloud Tasks pushes -------------------------------------------


class QuietRequests(WSGIRequestHandler):
    """HTTP/1.1 with kept-alive connections, and no log line per request (both servers)."""

    protocol_version = "HTTP/1.1"

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return


@contextmanager
def served(app: flask.Flask, port: int) -> Iterator[str]:
    """``app`` served on 127.0.0.1:``port`` by werkzeug's threaded server; its origin."""
    server = make_server("127.0.0.1", port, app, threaded=True, request_handler=QuietRequests)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


def function_app(name: str, function: Callable[[flask.Request], flask.Response]) -> flask.Flask:
    """``function`` as functions-framework serves an HTTP function: the same Flask app,
    error handler, execution-id middleware and routes as its ``create_app``."""
    app = flask.Flask(name)
    app.register_error_handler(500, functions_framework.crash_handler)
    app.wsgi_app = execution_id.WsgiMiddleware(app.wsgi_app)  # type: ignore[method-assign, no-untyped-call]
    functions_framework._configure_app(  # type: ignore[no-untyped-call]
        app, function, _function_registry.HTTP_SIGNATURE_TYPE
    )
    return app


@dataclass
class StepFunction:
    """``main.py``'s step function, built by functions-framework, and its parts."""

    app: flask.Flask
    deployment: Deployment
    meter: Meter
    origin: str
    audience: str
    shape: TaskShape


@contextmanager
def step_function(
    bench: Bench, firestore_host: str, tasks_host: str, issuer: OidcIssuer
) -> Iterator[StepFunction]:
    """``main.py``'s ``step`` target, configured for the emulators, OIDC verification on.

    The environment is set only while ``main.py`` is imported and its deployment built
    (its clients are created then). Its log lines (one per delivery, JSON, as on Google
    Cloud) are formatted as always but written to the null device.
    """
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    workload = types.ModuleType(WORKLOAD_MODULE)
    workload.app = bench.app  # type: ignore[attr-defined]
    sys.modules[WORKLOAD_MODULE] = workload
    env = {
        "REFLUXO_BACKEND": "gcp",
        "GOOGLE_CLOUD_PROJECT": EMULATOR_PROJECT,
        "REFLUXO_REGION": REGION,
        "REFLUXO_TASKS_QUEUE": QUEUE_ID,
        "REFLUXO_STEP_URL": f"{origin}/tasks/step",
        "REFLUXO_VERIFY_OIDC": "true",
        "REFLUXO_TASKS_SERVICE_ACCOUNT": TASKS_SERVICE_ACCOUNT,
        "REFLUXO_OIDC_AUDIENCE": origin,
        "REFLUXO_OIDC_CERTS_URL": issuer.certs_url(CERTS_LABEL),
        "REFLUXO_TASKS_EMULATOR_HOST": tasks_host,
        "FIRESTORE_EMULATOR_HOST": firestore_host,
        "REFLUXO_COLLECTION_PREFIX": bench.prefix,
        "REFLUXO_APP": f"{WORKLOAD_MODULE}:app",
        "REFLUXO_ROUTES": "dispatcher",
    }
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        app = functions_framework.create_app(  # type: ignore[no-untyped-call]
            target="step", source=str(MAIN)
        )
        deployment = cast(Deployment, sys.modules["main"].deployment())
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    with ExitStack() as stack:
        devnull = stack.enter_context(open(os.devnull, "w"))
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.StreamHandler):
                handler.setStream(devnull)
        stack.callback(deployment.close)
        service = deployment.service
        rpcs = RpcCounter()
        rpcs.install(cast(FirestoreStore, service.store).client)
        scheduler = cast(CloudTasksScheduler, service.scheduler)
        tasks = CountingTasks(scheduler.client)
        scheduler.client = tasks
        stack.enter_context(served(app, port))
        yield StepFunction(
            app, deployment, Meter(rpcs, tasks), origin, origin, TaskShape.of(scheduler)
        )


class BareFunction:
    """The trivial step function: parses the body, does the bare step, answers as the
    step route does. No token check (the token is sent, and ignored)."""

    def __init__(self, bench: Bench, template: Template, shape: TaskShape) -> None:
        self.bench = bench
        self.template = template
        self.shape = shape
        self.tasks = CountingTasks(bench.tasks_client)
        self.runs: dict[str, BareRun] = {}

    def __call__(self, request: flask.Request) -> flask.Response:
        body = request.get_json()
        self.runs[body["runId"]].step(body["version"])
        return flask.Response(
            json.dumps(STEP_OUTCOME, separators=(",", ":")), mimetype="application/json"
        )

    def start(self) -> tuple[BareRun, tasks_v2.Task]:
        run = BareRun(self.bench, self.template, self.tasks, self.shape)
        self.runs[run.run_id] = run
        return run, run.first_task()


class Pusher:
    """One kept-alive HTTP connection to a function, POSTing deliveries as Cloud Tasks does:
    the task's body, its headers, and an identity token minted before the clock starts
    (Google mints it, not the function)."""

    def __init__(self, origin: str, issuer: OidcIssuer, audience: str) -> None:
        parts = urlsplit(origin)
        assert parts.hostname is not None
        assert parts.port is not None
        self.connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        self.issuer = issuer
        self.audience = audience

    def headers(self, task: tasks_v2.Task, audience: str | None = None) -> dict[str, str]:
        """The headers of the push of ``task``, with a token for ``audience`` (the
        function's unless given)."""
        token = self.issuer.mint(audience or self.audience)
        return {
            **dict(task.http_request.headers),
            "User-Agent": "Google-Cloud-Tasks",
            "Authorization": f"Bearer {token}",
            "X-CloudTasks-QueueName": QUEUE_ID,
            "X-CloudTasks-TaskName": task.name.rsplit("/", 1)[-1],
            "X-CloudTasks-TaskRetryCount": "0",
            "X-CloudTasks-TaskExecutionCount": "0",
        }

    def push(self, task: tasks_v2.Task, headers: Mapping[str, str]) -> tuple[int, bytes]:
        self.connection.request(
            "POST", urlsplit(task.http_request.url).path, task.http_request.body, dict(headers)
        )
        response = self.connection.getresponse()
        return response.status, response.read()

    def close(self) -> None:
        self.connection.close()


class PushedChain:
    """A chain delivered as Cloud Tasks would: one timed POST per step, of the task the
    previous step created, until ``length`` steps have committed."""

    def __init__(
        self, pusher: Pusher, tasks: CountingTasks, first: tasks_v2.Task, length: int
    ) -> None:
        self.pusher = pusher
        self.tasks = tasks
        self.task: tasks_v2.Task | None = first
        self.length = length
        self.steps = 0
        self.durations: list[float] = []
        self.cpu: list[float] = []

    def step(self) -> bool:
        if self.task is None:
            return False
        created = self.tasks.created
        headers = self.pusher.headers(self.task)
        cpu = time.process_time()
        before = time.perf_counter()
        status, payload = self.pusher.push(self.task, headers)
        self.durations.append(time.perf_counter() - before)
        self.cpu.append(time.process_time() - cpu)
        assert status == 200, (status, payload)
        assert json.loads(payload) == STEP_OUTCOME, payload
        self.steps += 1
        if self.steps == self.length:
            assert self.tasks.created == created, "the last step scheduled a task"
            self.task = None
            return False
        assert self.tasks.created == created + 1, "a step scheduled no task"
        self.task = self.tasks.last
        return True


@dataclass
class Pushed:
    """Both sides of the pushed figure: how to start a chain of each."""

    bench: Bench
    issuer: OidcIssuer
    function: StepFunction
    bare: BareFunction
    product_pusher: Pusher
    bare_pusher: Pusher

    def refused_token(self) -> dict[str, Any]:
        """Push a delivery with a token minted for another audience: the step function
        must answer 401 and commit nothing (so the figure includes a real check)."""
        service = self.function.deployment.service
        run_id = new_run_id("r")
        assert service.start("chain", {"k": 1}, run_id=run_id).created
        task = self.function.meter.tasks.last
        assert task is not None
        headers = self.product_pusher.headers(task, audience="https://elsewhere.example")
        status, payload = self.product_pusher.push(task, headers)
        record = service.store.load_run(run_id)
        assert status == 401, (status, payload)
        assert record is not None
        assert record.version == 0, record
        return {"status": status, "error": json.loads(payload)["error"]["code"]}

    def certificate_fetches(self) -> int:
        """How many times the step function fetched the issuer's certificates."""
        return self.issuer.fetches(CERTS_LABEL)

    def product_chain(self) -> Recorded:
        service = self.function.deployment.service
        run_id = new_run_id("h")
        assert service.start("chain", {"k": 1}, run_id=run_id).created
        first = self.function.meter.tasks.last
        assert first is not None
        chain = PushedChain(
            self.product_pusher, self.function.meter.tasks, first, self.bench.length
        )
        return Recorded(chain, self.function.meter)

    def bare_chain(self) -> Recorded:
        _, first = self.bare.start()
        chain = PushedChain(self.bare_pusher, self.bare.tasks, first, self.bench.length)
        return Recorded(chain, Meter(self.bench.rpcs, self.bare.tasks))


@contextmanager
def pushed(
    bench: Bench, template: Template, firestore_host: str, tasks_host: str
) -> Iterator[Pushed]:
    """The step function and the bare function, each served on 127.0.0.1, and a pusher each."""
    with ExitStack() as stack:
        issuer = stack.enter_context(OidcIssuer())
        function = stack.enter_context(step_function(bench, firestore_host, tasks_host, issuer))
        port = free_port()
        bare_shape = replace(function.shape, url=f"http://127.0.0.1:{port}/tasks/step")
        bare = BareFunction(bench, template, bare_shape)
        origin = stack.enter_context(served(function_app("bare_step", bare), port))
        product_pusher = Pusher(function.origin, issuer, function.audience)
        bare_pusher = Pusher(origin, issuer, function.audience)
        stack.callback(product_pusher.close)
        stack.callback(bare_pusher.close)
        yield Pushed(bench, issuer, function, bare, product_pusher, bare_pusher)


# -- writes and tasks per node ---------------------------------------------------------------


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
        with self.phases.timing("history reads (node count)"):
            return self.inner.count(node_id)

    def get(self, node_id: str, index: int) -> Any:
        with self.phases.timing("history reads (result get)"):
            return self.inner.get(node_id, index)

    def all(self, node_id: str) -> Any:
        with self.phases.timing("history reads (result get)"):
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
        with self.phases.timing("load_run (head get: BatchGetDocuments)"):
            return self.inner.load_run(run_id)

    def commit(self, commit: StepCommit) -> Any:
        with self.phases.timing("commit (guarded batch: Commit)"):
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


def profile(bench: Bench, template: Template, rounds: int) -> dict[str, Any]:
    """Phases per step of the dispatcher and of the bare path, in lockstep."""
    phases, bare_phases = Phases(), Phases()
    dispatcher = bench.dispatcher(
        StepBudget(),
        store=TimedStore(bench.store(), phases),
        scheduler=TimedScheduler(bench.scheduler(), phases),
    )
    DispatcherChain(bench, dispatcher).run()  # its one definition read, untimed
    phases.seconds.clear()
    shape = TaskShape.of(bench.scheduler())
    durations: dict[str, list[float]] = {"dispatcher": [], "bare": []}
    for _ in range(rounds):
        chains: dict[str, Chain] = {
            "dispatcher": DispatcherChain(bench, dispatcher),
            "bare": BareChain(BareRun(bench, template, bench.tasks, shape, bare_phases)),
        }
        lockstep(list(chains.values()))
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
        "functions_framework": metadata.version("functions-framework"),
        "flask": metadata.version("flask"),
        "werkzeug": metadata.version("werkzeug"),
    }


def emit(row: dict[str, Any]) -> None:
    print(json.dumps(row), flush=True)


def interleaved(
    figure: str,
    pair: Callable[[], tuple[Recorded, Recorded]],
    bench: Bench,
    repetitions: int,
    warmup: int,
) -> dict[str, Any]:
    """Warm-up and timed repetitions of one figure, each one chain of each side in lockstep
    (the order flipping every repetition), every step's RPCs checked to match."""
    rows: list[dict[str, Any]] = []
    recorded: dict[str, list[StepRpcs]] = {"dispatcher": [], "bare": []}
    for index in range(warmup + repetitions):
        dispatcher, bare = pair()
        lockstep([dispatcher, bare] if index % 2 == 0 else [bare, dispatcher])
        bench.purge()
        same_rpcs(dispatcher.steps, bare.steps)
        timed = index >= warmup
        row: dict[str, Any] = {
            "measure": f"{figure}_repetition" if timed else f"{figure}_warmup",
            "index": index - warmup if timed else index,
            "dispatcher_us_per_step": round(mean_us(dispatcher.durations), 1),
            "bare_us_per_step": round(mean_us(bare.durations), 1),
            "dispatcher_cpu_us_per_step": round(mean_us(dispatcher.cpu), 1),
            "bare_cpu_us_per_step": round(mean_us(bare.cpu), 1),
        }
        row["ratio"] = round(row["dispatcher_us_per_step"] / row["bare_us_per_step"], 3)
        row["cpu_ratio"] = round(row["dispatcher_cpu_us_per_step"] / row["bare_cpu_us_per_step"], 3)
        emit(row)
        if timed:
            rows.append(row)
            recorded["dispatcher"] += dispatcher.steps
            recorded["bare"] += bare.steps
    dispatcher_median = statistics.median(r["dispatcher_us_per_step"] for r in rows)
    bare_median = statistics.median(r["bare_us_per_step"] for r in rows)
    dispatcher_cpu = statistics.median(r["dispatcher_cpu_us_per_step"] for r in rows)
    bare_cpu = statistics.median(r["bare_cpu_us_per_step"] for r in rows)
    summary = {
        "measure": f"{figure}_summary",
        "steps_per_chain": bench.length,
        "repetitions": repetitions,
        "dispatcher_us_per_step": round(dispatcher_median, 1),
        "bare_us_per_step": round(bare_median, 1),
        "ratio": round(dispatcher_median / bare_median, 3),
        "extra_us_per_step": round(dispatcher_median - bare_median, 1),
        "ratio_per_repetition": [r["ratio"] for r in rows],
        "median_of_ratios": round(statistics.median(r["ratio"] for r in rows), 3),
        "dispatcher_cpu_us_per_step": round(dispatcher_cpu, 1),
        "bare_cpu_us_per_step": round(bare_cpu, 1),
        "cpu_ratio": round(dispatcher_cpu / bare_cpu, 3),
        "cpu_ratio_per_repetition": [r["cpu_ratio"] for r in rows],
        "rpcs_per_step": {side: rpcs_per_step(steps) for side, steps in recorded.items()},
    }
    emit(summary)
    return summary


def checked(figure: str, dispatcher: Recorded, bare: Recorded) -> dict[str, Any]:
    """One untimed pair of chains in lockstep; raises unless both sent the same RPCs."""
    lockstep([dispatcher, bare])
    same_rpcs(dispatcher.steps, bare.steps)
    row = {
        "measure": f"{figure}_rpcs_checked",
        "dispatcher": rpcs_per_step(dispatcher.steps),
        "bare": rpcs_per_step(bare.steps),
    }
    emit(row)
    return row


def measure(
    bench: Bench,
    firestore_host: str,
    tasks_host: str,
    repetitions: int,
    warmup: int,
) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    with paused_queue(bench):
        template = record_template(bench)
        bench.purge()
        dispatcher = bench.dispatcher(StepBudget())
        DispatcherChain(bench, dispatcher).run()  # its one definition read, untimed
        bench.purge()
        shape = TaskShape.of(bench.scheduler())

        def direct_pair() -> tuple[Recorded, Recorded]:
            return (
                Recorded(DispatcherChain(bench, dispatcher), bench.meter()),
                Recorded(BareChain(BareRun(bench, template, bench.tasks, shape)), bench.meter()),
            )

        rows["direct_check"] = checked("direct", *direct_pair())
        bench.purge()
        # The emulator's JVM keeps getting faster for a few thousand requests: warm-up
        # rounds (printed, not counted) until the figures settle.
        rows["direct"] = interleaved("direct", direct_pair, bench, repetitions, warmup)

        for batch in (1, 10):
            rows[f"batch{batch}"] = per_node_counts(bench, StepBudget(max_steps=batch))
            emit(rows[f"batch{batch}"])
            bench.purge()

        with pushed(bench, template, firestore_host, tasks_host) as sides:
            # First chains: the certificates' fetch, the definition's read, the connections.
            lockstep([sides.product_chain(), sides.bare_chain()])
            bench.purge()

            def pushed_pair() -> tuple[Recorded, Recorded]:
                return sides.product_chain(), sides.bare_chain()

            rows["pushed_check"] = checked("pushed", *pushed_pair())
            bench.purge()
            rows["pushed"] = interleaved(
                "pushed", pushed_pair, bench, repetitions, max(1, warmup // 2)
            )
            rows["pushed_auth"] = {
                "measure": "pushed_auth",
                "refused_other_audience": sides.refused_token(),
                "certificate_fetches": sides.certificate_fetches(),
            }
            emit(rows["pushed_auth"])

        if rows["direct"]["ratio"] > TARGET_RATIO:
            rows["profile"] = profile(bench, template, rounds=3)
            emit(rows["profile"])
    return rows


def rpc_table(title: str, summary: dict[str, Any]) -> None:
    sides = summary["rpcs_per_step"]
    print(f"\n| {title}: per step | dispatcher | bare |\n|---|---:|---:|")
    methods = sorted(set(sides["dispatcher"]["rpcs"]) | set(sides["bare"]["rpcs"]))
    for method in methods:
        cells = " | ".join(str(sides[side]["rpcs"].get(method, 0)) for side in sides)
        print(f"| {method} | {cells} |")
    for key, label in (
        ("documents_written", "documents written"),
        ("commit_write_bytes", "bytes of writes in Commit"),
        ("task_bytes", "bytes of Task created"),
    ):
        print(f"| {label} | {sides['dispatcher'][key]} | {sides['bare'][key]} |")


FIGURES = {
    "direct": ("dispatcher (Dispatcher.deliver)", "bare get + guarded batch + create_task"),
    "pushed": ("step function (HTTP + OIDC + dispatcher)", "bare function (HTTP + bare step)"),
}
"""Each figure's two sides, as the tables name them."""


def table(rows: dict[str, dict[str, Any]], notes: dict[str, Any], length: int, reps: int) -> None:
    direct, pushed_ = rows["direct"], rows["pushed"]
    print(f"\n| chains of {length}, median of {reps} | value |\n|---|---:|")
    for figure, (ours, theirs) in FIGURES.items():
        summary = rows[figure]
        target = f" (target ≤ {TARGET_RATIO})" if figure == "direct" else ""
        print(f"| {figure}: {ours}, µs / step | {summary['dispatcher_us_per_step']} |")
        print(f"| {figure}: {theirs}, µs / step | {summary['bare_us_per_step']} |")
        print(f"| {figure}: ratio of the medians{target} | {summary['ratio']} |")
        print(
            f"| {figure}: median of the ratios per repetition | **{summary['median_of_ratios']}** |"
        )
        per_repetition = ", ".join(map(str, summary["ratio_per_repetition"]))
        print(f"| {figure}: ratio per repetition | {per_repetition} |")
        print(
            f"| {figure}: this process's CPU, µs / step, {ours} | "
            f"{summary['dispatcher_cpu_us_per_step']} |"
        )
        print(
            f"| {figure}: this process's CPU, µs / step, {theirs} | "
            f"{summary['bare_cpu_us_per_step']} |"
        )
        print(f"| {figure}: CPU ratio | {summary['cpu_ratio']} |")
    auth = rows["pushed_auth"]
    refused = auth["refused_other_audience"]
    print(f"| pushed: a token for another audience | {refused['status']} {refused['error']} |")
    print(f"| pushed: certificate fetches, whole run | {auth['certificate_fetches']} |")
    for batch in (1, 10):
        row = rows[f"batch{batch}"]
        print(f"| batch {batch}: µs / node | {row['us_per_node']} |")
        writes = row["firestore_writes_per_node"]
        print(f"| batch {batch}: Firestore document writes / node | {writes} |")
        print(f"| batch {batch}: tasks created / node | {row['tasks_per_node']} |")
        print(f"| batch {batch}: Firestore RPCs / node | {row['firestore_rpcs_per_node']} |")
    rpc_table("direct", direct)
    rpc_table("pushed", pushed_)
    profiled = rows.get("profile")
    if profiled is not None:
        print("\n| profiling pass | µs / step |\n|---|---:|")
        for name, phases in profiled["phases_us_per_step"].items():
            for phase, value in phases.items():
                label = phase if name != "dispatcher" else f"dispatcher: {phase}"
                print(f"| {label} | {value} |")
            print(f"| **{name}: total** | **{profiled['us_per_step'][name]}** |")
    print(f"\nmachine: {notes['cpus']} CPUs ({notes['cpu']}), Python {notes['python']}")


@dataclass
class Emulated:
    """The emulators' addresses, a client of each, and a local receiver's URL."""

    firestore_host: str
    tasks_host: str
    firestore_client: firestore.Client
    tasks_client: tasks_v2.CloudTasksClient
    url: str


@contextmanager
def emulators() -> Iterator[Emulated]:
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
            yield Emulated(
                firestore_emulator.host_port,
                tasks_emulator.host_port,
                client,
                tasks_client,
                receiver.url,
            )
    finally:
        tasks_emulator.process.stop()
        firestore_emulator.process.stop()


@contextmanager
def emulated_clients() -> Iterator[tuple[firestore.Client, tasks_v2.CloudTasksClient, str]]:
    """:func:`emulators`, as a Firestore client, a tasks client and the receiver's URL."""
    with emulators() as emulated:
        yield emulated.firestore_client, emulated.tasks_client, emulated.url


def main() -> None:
    quick = "--quick" in sys.argv
    length = 50 if quick else 200
    repetitions = 3 if quick else 7
    warmup = 2 if quick else 8
    notes = machine_notes()
    emit(notes)
    with emulators() as emulated:
        rpcs = RpcCounter()
        rpcs.install(emulated.firestore_client)
        loop = asyncio.new_event_loop()
        bench = Bench(
            app=chain_app(length),
            length=length,
            firestore_client=emulated.firestore_client,
            tasks_client=emulated.tasks_client,
            tasks=CountingTasks(emulated.tasks_client),
            rpcs=rpcs,
            prefix=f"bench{uuid.uuid4().hex[:8]}",
            url=emulated.url,
            loop=loop,
        )
        try:
            rows = measure(bench, emulated.firestore_host, emulated.tasks_host, repetitions, warmup)
        finally:
            loop.close()
    table(rows, notes, length, repetitions)


if __name__ == "__main__":
    main()
