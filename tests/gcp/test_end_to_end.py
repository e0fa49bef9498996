"""End to end on the emulators: main.py under functions-framework, Firestore, Cloud Tasks
and Pub/Sub, all real processes on 127.0.0.1.

A Pub/Sub message starts a run; Cloud Tasks carries it step by step through the HTTP step
function to completion; a failing node is retried at its schedule_time; a paused run is
resumed over HTTP; a duplicate task delivery commits nothing.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from google.cloud import firestore

from refluxo.api.client import ApiError, HttpClient
from refluxo.backends.gcp.cloud_tasks import CloudTasksScheduler, tasks_client_for_emulator
from refluxo.backends.gcp.firestore.store import FirestoreStore
from refluxo.runtime.ports import Delivery
from tests.support.e2e_app import RETRY_INTERVAL_MS
from tests.support.emulators import (
    EMULATOR_PROJECT,
    FunctionServer,
    TasksEmulator,
    free_port,
    start_functions_framework,
)
from tests.support.stores import assert_history_consistent, history_of
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
API_KEY = "e2e-" + "k" * 28


@dataclass
class Deployed:
    api: HttpClient
    step: FunctionServer
    events: FunctionServer
    store: FirestoreStore
    tasks: TasksEmulator
    step_url: str


@pytest.fixture(scope="module")
def deployed(firestore_emulator: str, tasks_emulator: TasksEmulator) -> Iterator[Deployed]:
    """One deployment (three functions-framework servers) shared by this module's tests."""
    project, _, region, _, queue = tasks_emulator.queue_path.split("/")[1:6]
    prefix = f"e2e{uuid.uuid4().hex[:12]}"
    step_port = free_port()
    step_url = f"http://127.0.0.1:{step_port}/tasks/step"
    env = {
        "REFLUXO_BACKEND": "gcp",
        "GOOGLE_CLOUD_PROJECT": project,
        "REFLUXO_REGION": region,
        "REFLUXO_TASKS_QUEUE": queue,
        "REFLUXO_STEP_URL": step_url,
        "REFLUXO_VERIFY_OIDC": "false",
        "REFLUXO_TASKS_EMULATOR_HOST": tasks_emulator.host_port,
        "FIRESTORE_EMULATOR_HOST": firestore_emulator,
        "REFLUXO_COLLECTION_PREFIX": prefix,
        "REFLUXO_APP": "tests.support.e2e_app:app",
        "REFLUXO_API_KEY": API_KEY,
        "PYTHONPATH": str(ROOT),
    }
    source = ROOT / "main.py"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FIRESTORE_EMULATOR_HOST", firestore_emulator)
        client = firestore.Client(project=EMULATOR_PROJECT)
    servers = []
    try:
        step = start_functions_framework(source, "step", env=env, port=step_port)
        servers.append(step)
        api = start_functions_framework(source, "api", env=env)
        servers.append(api)
        events = start_functions_framework(
            source, "on_message", env=env, signature_type="cloudevent"
        )
        servers.append(events)
        yield Deployed(
            api=HttpClient(api.url, api_key=API_KEY),
            step=step,
            events=events,
            store=FirestoreStore(client, prefix=prefix),
            tasks=tasks_emulator,
            step_url=step_url,
        )
    finally:
        for server in servers:
            server.stop()


def _status(deployed: Deployed, run_id: str) -> str | None:
    record = deployed.store.load_run(run_id)
    return None if record is None else record.status.value


def test_a_pubsub_message_starts_a_run_that_tasks_carry_to_completion(
    deployed: Deployed, pubsub_emulator: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import google.cloud.pubsub_v1 as pubsub_v1

    with monkeypatch.context() as patch:
        patch.setenv("PUBSUB_EMULATOR_HOST", pubsub_emulator)
        publisher = pubsub_v1.PublisherClient()
        subscriber = pubsub_v1.SubscriberClient()
    suffix = uuid.uuid4().hex[:8]
    topic = publisher.topic_path(EMULATOR_PROJECT, f"runs-{suffix}")
    publisher.create_topic(name=topic)
    subscriber.create_subscription(
        name=subscriber.subscription_path(EMULATOR_PROJECT, f"push-{suffix}"),
        topic=topic,
        push_config=pubsub_v1.types.PushConfig(push_endpoint=deployed.events.url + "/"),
    )
    body = json.dumps({"workflow": "chain", "input": {"order": 42}}).encode()
    message_id = publisher.publish(topic, body, runId=f"order-{suffix}").result(timeout=30)
    assert message_id

    run_id = f"order-{suffix}"
    wait_until(lambda: _status(deployed, run_id) == "completed", 60, "the chain to complete")
    path = assert_history_consistent(deployed.store, run_id)
    assert path == ["start", "a", "b", "c"]
    outputs = {e.node_id: e.result.output for e in deployed.store.timeline(run_id)}
    assert outputs["start"] == {"order": 42}
    assert outputs["c"] == {"node": "c", "version": 3}

    # The same message again (a redelivery) does not start a second run.
    publisher.publish(topic, body, runId=run_id).result(timeout=30)
    wait_until(
        lambda: "already_started" in deployed.events.process.log_tail(),
        30,
        "the redelivered message to be handled",
    )
    runs = deployed.store.list_runs(limit=200).runs
    assert [r.run_id for r in runs].count(run_id) == 1
    assert not any(r.run_id == f"msg-{message_id}" for r in runs)


def test_a_failing_node_is_retried_at_its_schedule_time(deployed: Deployed) -> None:
    run_id = deployed.api.start("flaky")["runId"]
    wait_until(lambda: _status(deployed, run_id) == "completed", 60, "the flaky run")
    attempts = history_of(deployed.store, run_id).all("f")
    assert [(r.attempt, r.error is None) for r in attempts] == [(1, False), (2, True)]
    assert attempts[0].error == "ConnectionError: attempt 1 failed"
    waited = attempts[1].timestamp - attempts[0].timestamp
    assert RETRY_INTERVAL_MS <= waited < RETRY_INTERVAL_MS + 5000
    assert assert_history_consistent(deployed.store, run_id) == ["start", "f", "f", "done"]


def test_a_paused_run_is_resumed_over_http(deployed: Deployed) -> None:
    with pytest.raises(ApiError) as unauthenticated:
        HttpClient(deployed.api.url).start("approval")
    assert unauthenticated.value.status == 401

    run_id = deployed.api.start("approval")["runId"]
    wait_until(lambda: _status(deployed, run_id) == "paused", 60, "the run to pause")
    view = deployed.api.resume(run_id, {"ok": True})
    assert view["status"] == "active"
    wait_until(lambda: _status(deployed, run_id) == "completed", 60, "the resumed run")
    assert assert_history_consistent(deployed.store, run_id) == ["start", "ask", "yes"]
    with pytest.raises(ApiError) as late:
        deployed.api.resume(run_id, {"ok": False})
    assert late.value.status == 409


def test_a_duplicate_task_delivery_commits_nothing(deployed: Deployed) -> None:
    run_id = deployed.api.start("chain")["runId"]
    wait_until(lambda: _status(deployed, run_id) == "completed", 60, "the chain")
    before = deployed.store.load_run(run_id)
    assert before is not None

    # The emulator accepts a second task for an already-delivered step: a duplicate.
    with tasks_client_for_emulator(deployed.tasks.host_port) as client:
        scheduler = CloudTasksScheduler(
            client,
            queue_path=deployed.tasks.queue_path,
            url=deployed.step_url,
            service_account_email=None,
            audience=None,
        )
        scheduler.schedule(Delivery(run_id, 1, 0, hop=9))
    wait_until(
        lambda: f"delivery {run_id} v1 (hop 9): stale" in deployed.step.process.log_tail(20_000),
        30,
        "the duplicate delivery",
    )
    after = deployed.store.load_run(run_id)
    assert after == before
    assert assert_history_consistent(deployed.store, run_id) == ["start", "a", "b", "c"]

    direct = HttpClient(deployed.step.url).request(
        "POST", "/tasks/step", {"runId": run_id, "version": 0}
    )
    assert direct == {"outcome": "stale", "steps": 0}


def test_an_async_executor_awaits_real_io_on_the_emulators(deployed: Deployed) -> None:
    deployed.api.start("awaiting", {}, run_id="async-1")
    wait_until(lambda: _status(deployed, "async-1") == "completed", 60, "the async run")
    outputs = [r.output for r in history_of(deployed.store, "async-1").all("compute")]
    assert outputs == [{"answer": 42, "slept": ["a", "b"]}]
