"""A fault-injecting driver for the durable runtime.

It plays scheduler and client for many runs of mixed workflows, and on the way injects the
faults deliveries meet in production: duplicates, the same delivery to two dispatchers at
once, crashes between commit and schedule, scheduling failures, store failures around the
commit, out-of-order and late deliveries, and duplicate or late resume payloads. Then it
checks every run: ended (or paused where a human never answered), no step committed twice,
the path each workflow must take.

The driver is backend-agnostic: it needs a store, a dispatcher factory, and a
:class:`DeliveryQueue` it can read pending deliveries from and acknowledge them on.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from refluxo import SnapshotStatus, StepResult
from refluxo.errors import TransientError
from refluxo.runtime import App, current_step
from refluxo.runtime.dispatcher import Dispatcher
from refluxo.runtime.errors import RunConflict
from refluxo.runtime.links import child_run_id, waiting_for_children
from refluxo.runtime.ports import (
    ChildEnd,
    Delivery,
    JoinCount,
    Scheduler,
    SnapshotStore,
    StepCommit,
)
from refluxo.runtime.service import RunService
from tests.support.clock import FakeClock
from tests.support.stores import history_of


class SimulatedCrash(Exception):
    """The process died here: nothing after this point happened."""


class DeliveryQueue(Protocol):
    def due(self, now: int) -> list[Delivery]: ...

    def next_due_at(self) -> int | None: ...

    def acknowledge(self, delivery: Delivery) -> None: ...


def build_fault_app(clock: FakeClock) -> App:
    """Four workflow shapes with known paths: chain, branch, loop, flaky, approval."""
    app = App(clock=clock)

    @app.node()
    def emit(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        return StepResult({"node": current_step().node_id, "input": payload})

    @app.node()
    def choose(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        value = context["start"][-1].output["n"]
        return StepResult(value, next_handle="even" if value % 2 == 0 else "odd")

    @app.node()
    def iterate(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        index = len(context.get("loop", []))
        total = context["start"][-1].output["n"] % 4 + 1
        return StepResult(index, next_handle="again" if index < total else "done")

    @app.node(retry_policy={"maxAttempts": 5, "interval": 1000, "backoff": "exponential"})
    def flaky(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        failures = context["start"][-1].output["n"] % 3
        if current_step().attempt <= failures:
            raise ConnectionError(f"attempt {current_step().attempt}")
        return StepResult({"attempt": current_step().attempt})

    @app.node()
    def approve(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        if payload is None:
            return StepResult(pause=True)
        return StepResult(payload, next_handle="yes" if payload["ok"] else "no")

    @app.node()
    def spread(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        n = context["start"][-1].output["n"]
        return StepResult([{"n": item} for item in fanout_items(n)])

    @app.node()
    def square(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        n = context["start"][-1].output["n"]
        if n % 5 == 3:
            raise ValueError(f"no square for {n}")
        return StepResult({"sq": n * n})

    def graph(nodes: list[tuple[str, str]], edges: list[tuple[str, str, str | None]]) -> Any:
        return {
            "start": "start",
            "nodes": [{"id": "start", "type": "trigger"}]
            + [{"id": i, "type": t} for i, t in nodes],
            "edges": [
                {"source": s, "target": t, **({} if h is None else {"sourceHandle": h})}
                for s, t, h in edges
            ],
        }

    app.workflow(
        "chain",
        graph(
            [("a", "emit"), ("b", "emit"), ("c", "emit")],
            [("start", "a", None), ("a", "b", None), ("b", "c", None)],
        ),
    )
    app.workflow(
        "branch",
        graph(
            [("pick", "choose"), ("even", "emit"), ("odd", "emit")],
            [("start", "pick", None), ("pick", "even", "even"), ("pick", "odd", "odd")],
        ),
    )
    app.workflow(
        "loop",
        graph(
            [("loop", "iterate"), ("body", "emit"), ("end", "emit")],
            [
                ("start", "loop", None),
                ("loop", "body", "again"),
                ("body", "loop", None),
                ("loop", "end", "done"),
            ],
        ),
    )
    app.workflow(
        "flaky",
        graph([("f", "flaky"), ("after", "emit")], [("start", "f", None), ("f", "after", None)]),
    )
    app.workflow("item", graph([("sq", "square")], [("start", "sq", None)]))
    fanout = graph(
        [("spread", "spread"), ("m", "map"), ("done", "emit")],
        [("start", "spread", None), ("spread", "m", None), ("m", "done", None)],
    )
    fanout["nodes"][2]["data"] = {
        "items": "{{ nodes.spread.output }}",
        "workflow": "item",
        "concurrency": 3,
        "failure": "collect",
    }
    app.workflow("fanout", fanout)
    app.workflow(
        "approval",
        graph(
            [("ask", "approve"), ("yes", "emit"), ("no", "emit")],
            [("start", "ask", None), ("ask", "yes", "yes"), ("ask", "no", "no")],
        ),
    )
    return app


def fanout_items(n: int) -> list[int]:
    """The items a ``fanout`` run of input ``n`` maps over (0 to 7 of them)."""
    return [n * 10 + k for k in range(n % 8)]


def fanout_output(n: int) -> list[Any]:
    """What the ``map`` node of a ``fanout`` run of input ``n`` must output."""
    return [
        {"error": f"node 'sq' failed after 1 attempt: ValueError: no square for {item}"}
        if item % 5 == 3
        else {"sq": item * item}
        for item in fanout_items(n)
    ]


def expected_path(workflow: str, n: int, answer: bool | None) -> list[str] | None:
    """The committed node sequence a run must end with (None: not checked exactly)."""
    if workflow == "chain":
        return ["start", "a", "b", "c"]
    if workflow == "branch":
        return ["start", "pick", "even" if n % 2 == 0 else "odd"]
    if workflow == "loop":
        total = n % 4 + 1
        return ["start"] + ["loop", "body"] * total + ["loop", "end"]
    if workflow == "flaky":
        return ["start"] + ["f"] * (n % 3 + 1) + ["after"]
    if workflow == "fanout":
        return ["start", "spread", "m", "done"]
    if answer is None:
        return ["start"]
    return ["start", "ask", "yes" if answer else "no"]


class FaultyScheduler:
    """Wraps a scheduler: sometimes fails, sometimes the process "dies" right after commit."""

    def __init__(self, inner: Scheduler, plan: FaultPlan) -> None:
        self.inner = inner
        self.plan = plan

    def schedule(self, delivery: Delivery) -> None:
        if self.plan.take("crash_between_commit_and_schedule"):
            raise SimulatedCrash("crashed after commit, before schedule")
        if self.plan.take("scheduling_failure"):
            raise ConnectionError("scheduler unavailable")
        self.inner.schedule(delivery)
        if self.plan.take("duplicate_schedule"):
            self.inner.schedule(delivery)


class FaultyStore:
    """Wraps a store: sometimes fails before a commit, sometimes after it (lost reply)."""

    def __init__(self, inner: SnapshotStore, plan: FaultPlan) -> None:
        self.inner = inner
        self.plan = plan

    def commit(self, commit: StepCommit) -> Any:
        if self.plan.take("store_failure_before_commit"):
            raise TransientError("store unavailable")
        result = self.inner.commit(commit)
        if result.committed and self.plan.take("store_reply_lost_after_commit"):
            raise TransientError("connection reset after commit")
        return result

    def record_child_end(self, parent_id: str, version: int, end: ChildEnd) -> JoinCount:
        if self.plan.take("store_failure_before_commit"):
            raise TransientError("store unavailable")
        count = self.inner.record_child_end(parent_id, version, end)
        if self.plan.take("ledger_reply_lost"):
            raise TransientError("connection reset after recording a child's end")
        return count

    def put_child_inputs(self, parent_id: str, version: int, digest: str, inputs: Any) -> None:
        if self.plan.take("store_failure_before_commit"):
            raise TransientError("store unavailable")
        self.inner.put_child_inputs(parent_id, version, digest, inputs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@dataclass
class FaultPlan:
    """Which faults to inject, how often, and how many were injected."""

    rng: random.Random
    rates: dict[str, float]
    injected: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, kind: str) -> bool:
        with self.lock:
            if self.rng.random() < self.rates.get(kind, 0.0):
                self.injected[kind] += 1
                return True
            return False


DEFAULT_RATES = {
    "duplicate_delivery": 0.08,
    "concurrent_delivery": 0.05,
    "late_delivery": 0.08,
    "out_of_order": 0.5,
    "crash_between_commit_and_schedule": 0.03,
    "scheduling_failure": 0.03,
    "duplicate_schedule": 0.05,
    "store_failure_before_commit": 0.03,
    "store_reply_lost_after_commit": 0.02,
    "duplicate_resume": 0.3,
    "late_resume": 0.03,
    "ledger_reply_lost": 0.05,
}


@dataclass
class Report:
    runs: int
    steps: int
    deliveries: int
    faults: dict[str, int]
    anomalies: list[str]
    outcomes: dict[str, int]

    def render(self) -> str:
        faults = ", ".join(f"{kind} {count}" for kind, count in sorted(self.faults.items()))
        return (
            f"runs {self.runs}, committed steps {self.steps}, deliveries {self.deliveries}; "
            f"faults injected: {faults} (total {sum(self.faults.values())}); "
            f"outcomes: {dict(sorted(self.outcomes.items()))}; anomalies found: "
            f"{len(self.anomalies)}"
        )


class FaultDriver:
    """Drives ``runs`` runs to their end through faults, then audits them."""

    def __init__(
        self,
        *,
        app: App,
        clock: FakeClock,
        store: SnapshotStore,
        scheduler: Scheduler,
        queue: DeliveryQueue,
        plan: FaultPlan,
        second_dispatcher: Callable[[], Dispatcher] | None = None,
    ) -> None:
        self.app = app
        self.clock = clock
        self.plan = plan
        self.store = store
        self.queue = queue
        faulty_store = FaultyStore(store, plan)
        faulty_scheduler = FaultyScheduler(scheduler, plan)
        self.dispatcher = Dispatcher(app, faulty_store, faulty_scheduler)
        self.service = RunService(Dispatcher(app, store, faulty_scheduler))
        self.second_dispatcher = second_dispatcher
        self.delivered: list[Delivery] = []
        self.outcomes: Counter[str] = Counter()
        self.answers: dict[str, bool | None] = {}
        self.paused_at: dict[str, int] = {}
        self.late_resume_accepted: list[str] = []
        self.inputs: dict[str, int] = {}
        self.to_cancel: set[str] = set()
        self.cancelled: list[str] = []
        self.loop = asyncio.new_event_loop()

    def start_runs(self, count: int) -> None:
        workflows = ["chain", "branch", "loop", "flaky", "approval", "fanout"]
        for index in range(count):
            workflow = workflows[index % len(workflows)]
            run_id = f"run-{index:05d}"
            self.inputs[run_id] = index
            if workflow == "fanout" and index % 12 == 11 and fanout_items(index):
                self.to_cancel.add(run_id)
            while True:
                try:
                    self.service.start(workflow, {"n": index}, run_id=run_id)
                    break
                except (ConnectionError, SimulatedCrash):
                    continue  # the client retries an idempotent start

    def _deliver(self, delivery: Delivery) -> None:
        try:
            result = self.loop.run_until_complete(self.dispatcher.deliver(delivery))
        except (SimulatedCrash, ConnectionError, TransientError):
            self.outcomes["failed_delivery"] += 1
            return  # not acknowledged: the queue delivers it again
        self.outcomes[result.outcome.value] += 1
        self.delivered.append(delivery)
        self.queue.acknowledge(delivery)

    def _deliver_concurrently(self, delivery: Delivery) -> None:
        assert self.second_dispatcher is not None
        other = self.second_dispatcher()
        outcomes: list[str] = []

        def run() -> None:
            try:
                outcomes.append(asyncio.run(other.deliver(delivery)).outcome.value)
            except (SimulatedCrash, ConnectionError, TransientError):
                outcomes.append("failed_delivery")

        thread = threading.Thread(target=run)
        thread.start()
        self._deliver(delivery)
        thread.join(30)
        for outcome in outcomes:
            self.outcomes[f"concurrent_{outcome}"] += 1

    def _cancel_waiting_maps(self) -> None:
        """Cancel every other fanout run while it waits for its children (the others run
        to their join): once cancelled, it must fail, and every child end or be cancelled."""
        for run_id in sorted(self.to_cancel - set(self.cancelled)):
            record = self.store.load_run(run_id)
            if record is None or record.status.is_terminal:
                self.to_cancel.discard(run_id)
                continue
            if waiting_for_children(record.snapshot) is None:
                continue
            try:
                self.service.cancel(run_id, "enough")
            except RunConflict:
                continue
            except (ConnectionError, SimulatedCrash):
                pass  # committed, its cascade's scheduling failed: a report schedules it
            self.cancelled.append(run_id)
            self.outcomes["map_cancelled_while_waiting"] += 1

    def _resume_paused(self) -> bool:
        """Answer some paused approvals; leave every fifth one waiting forever."""
        progressed = False
        for record in self.store.list_runs(status=SnapshotStatus.PAUSED, limit=500).runs:
            if record.run_id in self.answers or waiting_for_children(record.snapshot):
                continue
            n = self.inputs[record.run_id]
            if n % 25 == 4:  # approval runs whose human never answers
                self.answers[record.run_id] = None
                continue
            answer = n % 2 == 0
            self._resume(record.run_id, answer, record.version)
            self.answers[record.run_id] = answer
            self.paused_at[record.run_id] = record.version
            if self.plan.take("duplicate_resume"):
                self._resume(record.run_id, not answer, record.version)
            progressed = True
        return progressed

    def _resume(self, run_id: str, answer: bool, version: int) -> None:
        for _ in range(10):
            try:
                self.service.resume(run_id, {"ok": answer}, expected_version=version)
                return
            except RunConflict:
                self.outcomes["resume_rejected"] += 1
                return
            except (ConnectionError, SimulatedCrash):
                continue  # the resume itself committed; its schedule failed: retry is a 409

    def run(self, count: int, max_rounds: int = 100_000) -> Report:
        self.start_runs(count)
        rng = self.plan.rng
        for _ in range(max_rounds):
            self._cancel_waiting_maps()
            due = self.queue.due(self.clock.now)
            if not due:
                if self._resume_paused():
                    continue
                next_due = self.queue.next_due_at()
                if next_due is None:
                    break
                self.clock.now = max(self.clock.now, next_due)
                continue
            if self.plan.take("out_of_order"):
                rng.shuffle(due)
            for delivery in due[:50]:
                if self.second_dispatcher is not None and self.plan.take("concurrent_delivery"):
                    self._deliver_concurrently(delivery)
                else:
                    self._deliver(delivery)
                if self.plan.take("duplicate_delivery"):
                    self._deliver(delivery)
                if self.delivered and self.plan.take("late_delivery"):
                    self._deliver(rng.choice(self.delivered))
                if self.paused_at and self.plan.take("late_resume"):
                    # A second answer for a pause that was already answered must never land.
                    run_id = rng.choice(sorted(self.paused_at))
                    try:
                        self.service.resume(
                            run_id,
                            {"ok": None, "late": True},
                            expected_version=self.paused_at[run_id],
                        )
                        self.late_resume_accepted.append(run_id)
                    except RunConflict:
                        self.outcomes["late_resume_rejected"] += 1
                    except (ConnectionError, SimulatedCrash):
                        self.late_resume_accepted.append(run_id)  # it committed before failing
        else:
            raise AssertionError("the fault driver did not converge")
        self.loop.close()
        return self.audit(count)

    def audit(self, count: int) -> Report:
        anomalies = [
            f"{run_id}: a late resume was accepted" for run_id in self.late_resume_accepted
        ]
        steps = 0
        for index in range(count):
            run_id = f"run-{index:05d}"
            record = self.store.load_run(run_id)
            if record is None:
                anomalies.append(f"{run_id}: lost")
                continue
            timeline = self.store.timeline(run_id, limit=100_000)
            steps += len(timeline)
            path = [entry.node_id for entry in timeline if entry.result.error is None]
            if [e.seq for e in timeline] != list(range(record.result_count)):
                anomalies.append(f"{run_id}: results are not 0..{record.result_count - 1}")
            per_node = Counter(e.node_id for e in timeline)
            history = history_of(self.store, run_id)
            for node_id, seen in per_node.items():
                if history.count(node_id) != seen:
                    anomalies.append(f"{run_id}: node {node_id} counted twice")
            answer = self.answers.get(run_id)
            expected = expected_path(record.workflow, index, answer)
            if run_id in self.cancelled:
                expected = ["start", "spread"]  # cancelled while its map waited
            flaky_path = [e.node_id for e in timeline]
            actual = flaky_path if record.workflow == "flaky" else path
            if expected is not None and actual != expected:
                anomalies.append(f"{run_id}: path {actual} != {expected}")
            if run_id in self.cancelled:
                anomalies += self._audit_cancelled(run_id, index, record)
                continue
            if record.workflow == "fanout":
                anomalies += self._audit_fanout(run_id, index, record)
            waiting = record.workflow == "approval" and answer is None
            wanted = "paused" if waiting else "completed"
            if record.status != wanted:
                anomalies.append(f"{run_id}: {record.status}, expected {wanted}")
        children = sum(
            1
            for page_run in self.store.list_runs(limit=100_000).runs
            if page_run.run_id not in self.inputs
        )
        expected_children = sum(
            len(fanout_items(n))
            for run_id, n in self.inputs.items()
            if n % 6 == 5 and run_id not in self.cancelled
        )
        most = expected_children + sum(len(fanout_items(self.inputs[r])) for r in self.cancelled)
        if not expected_children <= children <= most:
            anomalies.append(f"{children} child runs stored, {expected_children} expected")
        return Report(
            runs=count,
            steps=steps,
            deliveries=sum(v for k, v in self.outcomes.items() if not k.startswith("concurrent")),
            faults=dict(self.plan.injected),
            anomalies=anomalies,
            outcomes=dict(self.outcomes),
        )

    def _audit_fanout(self, run_id: str, n: int, record: Any) -> list[str]:
        """The map's output, its children (each run once, reported once), one join."""
        anomalies: list[str] = []
        timeline = self.store.timeline(run_id, limit=100_000)
        maps = [entry for entry in timeline if entry.node_id == "m"]
        if len(maps) != 1:
            return [f"{run_id}: the map node has {len(maps)} results (joined more than once?)"]
        output = [
            {"error": entry["error"]} if isinstance(entry, dict) and "error" in entry else entry
            for entry in maps[0].result.output
        ]
        if output != fanout_output(n):
            anomalies.append(f"{run_id}: map output {output} != {fanout_output(n)}")
        summary = record.snapshot.metadata.get("childRuns") or {}
        items = fanout_items(n)
        if items and summary.get("ended") != len(items):
            anomalies.append(
                f"{run_id}: {summary.get('ended')} children ended, {len(items)} expected"
            )
        for index, item in enumerate(items):
            child_id = child_run_id(run_id, int(summary.get("version", -1)), index)
            child = self.store.load_run(child_id)
            if child is None:
                anomalies.append(f"{child_id}: child lost")
                continue
            steps = [entry.node_id for entry in self.store.timeline(child_id, limit=100)]
            if steps != ["start", "sq"]:
                anomalies.append(f"{child_id}: child steps {steps}")
            link = child.snapshot.metadata.get("parentRun") or {}
            if link.get("reported") is not True:
                anomalies.append(f"{child_id}: end never reported")
            wanted = "failed" if item % 5 == 3 else "completed"
            if child.status != wanted:
                anomalies.append(f"{child_id}: {child.status}, expected {wanted}")
        return anomalies

    def _audit_cancelled(self, run_id: str, n: int, record: Any) -> list[str]:
        """A map cancelled while it waited: failed, its cascade done, every child it
        started ended (completed, or cancelled between two steps) and reported."""
        anomalies: list[str] = []
        if record.status != "failed" or record.snapshot.metadata.get("failedReason") != "enough":
            anomalies.append(f"{run_id}: {record.status} after a cancel")
        summary = record.snapshot.metadata.get("childRuns") or {}
        if summary.get("waiting") is not False or summary.get("cancelled") is not True:
            anomalies.append(f"{run_id}: the cancel's cascade did not finish: {summary}")
        for index in range(len(fanout_items(n))):
            child_id = child_run_id(run_id, int(summary.get("version", -1)), index)
            child = self.store.load_run(child_id)
            if child is None:
                continue  # never started: the window had not reached it
            if not child.status.is_terminal:
                anomalies.append(f"{child_id}: still {child.status} after its parent's cancel")
            reason = str(child.snapshot.metadata.get("failedReason", ""))
            if child.status == "failed" and not (
                reason.startswith("Cancelled") or "no square" in reason
            ):
                anomalies.append(f"{child_id}: failed for {reason!r}")
            if (child.snapshot.metadata.get("parentRun") or {}).get("reported") is not True:
                anomalies.append(f"{child_id}: end never reported")
        return anomalies
