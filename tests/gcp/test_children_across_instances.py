"""A map's children spread across instances, and its ``concurrency`` holds, on Cloud Tasks.

Each child step is a task of its own; the queue (:class:`~tests.support.fake_cloud_tasks.
FakeCloudTasks`, which dispatches as the service documents it) hands each task to
whichever instance asks next. Here six instances, each its own app, Firestore client and
scheduler over one Firestore emulator and one queue, each serving one request at a time
(a Cloud Run service with ``concurrency`` 1), take tasks from their own threads.

The first window of children (``concurrency`` of them) is held inside their work node, so
on distinct instances, while the test checks that no child beyond the window exists: a
child starts only when another has ended.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from google.cloud import firestore

from refluxo import StepResult
from refluxo.backends.gcp.cloud_tasks import CloudTasksScheduler
from refluxo.backends.gcp.firestore.store import FirestoreStore
from refluxo.model import SnapshotStatus
from refluxo.runtime import App, Delivery, Dispatcher, RunService
from refluxo.runtime.links import child_run_id
from tests.support.emulators import EMULATOR_PROJECT
from tests.support.fake_cloud_tasks import FakeCloudTasks, RetryConfig

QUEUE = "projects/p/locations/l/queues/spread"
INSTANCES = 6
CONCURRENCY = 3
ITEMS = 24
HOLD_TIMEOUT_S = 30


def wall_clock() -> int:
    return int(time.time() * 1000)


class InFlight:
    """How many children's work nodes run at this moment, the most ever, and where; the
    first window's children are held until the test has looked at the store."""

    def __init__(self) -> None:
        self.lock = threading.Condition()
        self.now = 0
        self.most = 0
        self.held = 0
        self.release = threading.Event()
        self.instances_by_item: dict[int, str] = {}

    def work(self, item: int, instance: str) -> dict[str, Any]:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
            self.instances_by_item[item] = instance
            if item < CONCURRENCY:
                self.held += 1
                self.lock.notify_all()
        try:
            if item < CONCURRENCY:
                assert self.release.wait(HOLD_TIMEOUT_S), "the test never released the window"
            return {"item": item, "by": instance}
        finally:
            with self.lock:
                self.now -= 1

    def wait_for_window(self) -> bool:
        with self.lock:
            return self.lock.wait_for(lambda: self.held == CONCURRENCY, HOLD_TIMEOUT_S)


def build_app(name: str, in_flight: InFlight) -> App:
    app = App()

    @app.node()
    def work(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        return StepResult(in_flight.work(int(context["start"][-1].output["i"]), name))

    app.workflow(
        "item",
        {
            "nodes": [{"id": "start", "type": "trigger"}, {"id": "w", "type": "work"}],
            "edges": [{"source": "start", "target": "w"}],
        },
    )
    app.workflow(
        "spread",
        {
            "nodes": [
                {"id": "start", "type": "trigger"},
                {
                    "id": "m",
                    "type": "map",
                    "data": {
                        "items": "{{ nodes.start.output.items }}",
                        "workflow": "item",
                        "concurrency": CONCURRENCY,
                    },
                },
            ],
            "edges": [{"source": "start", "target": "m"}],
        },
    )
    return app


def test_a_maps_children_run_on_several_instances_at_most_concurrency_at_once(
    firestore_prefix: str, firestore_emulator: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeCloudTasks(QUEUE, wall_clock, RetryConfig(max_attempts=5, min_backoff_ms=100))
    in_flight = InFlight()
    services: list[RunService] = []
    stores: list[FirestoreStore] = []
    for index in range(INSTANCES):
        with monkeypatch.context() as patch:  # one client per instance, one emulator
            patch.setenv("FIRESTORE_EMULATOR_HOST", firestore_emulator)
            client = firestore.Client(project=EMULATOR_PROJECT)
        store = FirestoreStore(client, prefix=firestore_prefix)
        stores.append(store)
        scheduler = CloudTasksScheduler(fake, queue_path=QUEUE, url="https://fn.example/step")
        services.append(RunService(Dispatcher(build_app(f"i{index}", in_flight), store, scheduler)))

    services[0].start("spread", {"items": [{"i": i} for i in range(ITEMS)]}, run_id="p")
    done = threading.Event()
    failures: list[BaseException] = []
    steps: Counter[str] = Counter()

    def serve(name: str, service: RunService) -> Callable[[], None]:
        def handle(task: Any) -> None:
            body = json.loads(task.http_request.body)
            service.deliver(Delivery(body["runId"], body["version"], body["dueAt"], body["hop"]))
            steps[name] += 1

        def loop() -> None:
            try:
                while not done.is_set():
                    if fake.dispatch_due(handle, limit=1) == 0:
                        done.wait(0.005)  # an idle instance asks the queue again shortly
            except BaseException as err:  # pragma: no cover - reported below
                failures.append(err)
                done.set()

        return loop

    threads = [
        threading.Thread(target=serve(f"i{index}", service), daemon=True)
        for index, service in enumerate(services)
    ]
    for thread in threads:
        thread.start()
    window_ran = in_flight.wait_for_window()
    version = int(services[0].get("p").snapshot.metadata["childRuns"]["version"])
    beyond = [
        i for i in range(CONCURRENCY, ITEMS) if stores[0].load_run(child_run_id("p", version, i))
    ]
    in_flight.release.set()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not done.is_set():
        if services[0].get("p").status.is_terminal and not fake.queued():
            break
        done.wait(0.05)
    done.set()
    for thread in threads:
        thread.join(timeout=30)
    for service in services:
        service.close()

    assert failures == []
    assert window_ran, "the first window's children did not run at once"
    assert beyond == []  # while the window ran, no further child was started
    parent = services[0].get("p")
    assert parent.status == SnapshotStatus.COMPLETED, parent.snapshot.metadata
    mapped = next(e.result.output for e in services[0].timeline("p") if e.node_id == "m")
    assert [out["item"] for out in mapped] == list(range(ITEMS))
    assert [out["by"] for out in mapped] == [in_flight.instances_by_item[i] for i in range(ITEMS)]
    # The first window ran at once, each on its own instance; none ran beyond it.
    assert in_flight.most == CONCURRENCY
    assert len({in_flight.instances_by_item[i] for i in range(CONCURRENCY)}) == CONCURRENCY
    assert len(set(in_flight.instances_by_item.values())) >= CONCURRENCY
    assert not [a for a in fake.attempts if not a.succeeded]  # no attempt failed
    assert sum(steps.values()) >= 3 * ITEMS  # each child: two steps and its report
