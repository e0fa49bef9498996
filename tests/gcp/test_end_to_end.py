"""End to end on the emulators: main.py under functions-framework, Firestore, Cloud Tasks
and Pub/Sub, all real processes on 127.0.0.1, with the step function checking OIDC tokens
as on Google Cloud.

A Pub/Sub message starts a run; Cloud Tasks carries it step by step through the HTTP step
function to completion, each delivery with the tasks invoker's RS256 identity token (added
by a relay, as the emulator signs nothing: see :mod:`tests.support.e2e_deployment`); a
failing node is retried at its schedule_time; a paused run is resumed over HTTP; a
duplicate task delivery commits nothing. The refusals are in ``test_oidc_end_to_end.py``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest

from refluxo.api.client import ApiError, HttpClient
from refluxo.backends.gcp.cloud_tasks import CloudTasksScheduler, tasks_client_for_emulator
from refluxo.runtime.links import child_run_id
from refluxo.runtime.ports import Delivery
from tests.support.e2e_app import RETRY_INTERVAL_MS
from tests.support.e2e_deployment import Deployment, deploy
from tests.support.emulators import EMULATOR_PROJECT, TasksEmulator
from tests.support.gcp_queue import delivery_of
from tests.support.oidc_issuer import TASKS_SERVICE_ACCOUNT, OidcIssuer
from tests.support.stores import assert_history_consistent, history_of
from tests.support.waiting import wait_until


@pytest.fixture(scope="module")
def deployed(
    firestore_emulator: str, tasks_emulator: TasksEmulator, oidc_issuer: OidcIssuer
) -> Iterator[Deployment]:
    """One deployment (three functions-framework servers) shared by this module's tests."""
    with deploy(firestore_emulator, tasks_emulator, oidc_issuer, events=True) as deployment:
        yield deployment


def _status(deployed: Deployment, run_id: str) -> str | None:
    record = deployed.store.load_run(run_id)
    return None if record is None else record.status.value


def _relayed(deployed: Deployment, run_id: str) -> list[int]:
    """The step function's answers to the signed deliveries of ``run_id``, in order."""
    return [
        done.status
        for done in list(deployed.relay.forwarded)
        if (delivery_of(done.body) or {}).get("runId") == run_id
    ]


def test_a_pubsub_message_starts_a_run_that_tasks_carry_to_completion(
    deployed: Deployment, pubsub_emulator: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import google.cloud.pubsub_v1 as pubsub_v1

    events = deployed.events
    assert events is not None
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
        push_config=pubsub_v1.types.PushConfig(push_endpoint=events.url + "/"),
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
    # Each step came with a token the function checked (and so did any duplicate: a push
    # Pub/Sub retried schedules the first step again): its claims, as Cloud Run's IAM hands
    # it on without its signature, so no certificate was fetched.
    relayed = _relayed(deployed, run_id)
    assert len(relayed) >= 4
    assert set(relayed) == {200}
    assert deployed.issuer.fetches(deployed.certs_label) == 0

    # The same message again (a redelivery) does not start a second run.
    publisher.publish(topic, body, runId=run_id).result(timeout=30)
    wait_until(
        lambda: "already_started" in events.process.log_tail(),
        30,
        "the redelivered message to be handled",
    )
    runs = deployed.store.list_runs(limit=200).runs
    assert [r.run_id for r in runs].count(run_id) == 1
    assert not any(r.run_id == f"msg-{message_id}" for r in runs)


def test_a_failing_node_is_retried_at_its_schedule_time(deployed: Deployment) -> None:
    run_id = deployed.api.start("flaky")["runId"]
    wait_until(lambda: _status(deployed, run_id) == "completed", 60, "the flaky run")
    attempts = history_of(deployed.store, run_id).all("f")
    assert [(r.attempt, r.error is None) for r in attempts] == [(1, False), (2, True)]
    assert attempts[0].error == "ConnectionError: attempt 1 failed"
    waited = attempts[1].timestamp - attempts[0].timestamp
    assert RETRY_INTERVAL_MS <= waited < RETRY_INTERVAL_MS + 5000
    assert assert_history_consistent(deployed.store, run_id) == ["start", "f", "f", "done"]


def test_the_example_enriches_records_in_child_runs_then_aggregates(
    deployed: Deployment,
) -> None:
    run_id = deployed.api.start("enrich-records", {"count": 30})["runId"]
    wait_until(lambda: _status(deployed, run_id) == "completed", 180, "the map to join")
    history = history_of(deployed.store, run_id)
    enriched = history.all("enrich")[0].output
    assert [entry["id"] for entry in enriched] == [f"c{i:05d}" for i in range(30)]
    spends = [(i * 37) % 500 for i in range(30)]
    assert history.all("report")[0].output == {
        "records": 30,
        "byTier": {
            "bronze": sum(1 for s in spends if s < 200),
            "silver": sum(1 for s in spends if 200 <= s < 400),
            "gold": sum(1 for s in spends if s >= 400),
        },
        "failed": [],
    }
    parent = deployed.api.get(run_id)
    summary = parent["snapshot"]["metadata"]["childRuns"]
    assert summary["ended"] == 30
    for index in (0, 17, 29):
        child = deployed.store.load_run(child_run_id(run_id, summary["version"], index))
        assert child is not None
        assert child.status.value == "completed"
        assert child.snapshot.metadata["parentRun"]["reported"] is True
        assert assert_history_consistent(deployed.store, child.run_id) == ["start", "score"]


def test_a_paused_run_is_resumed_over_http(deployed: Deployment) -> None:
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


def test_a_duplicate_task_delivery_commits_nothing(deployed: Deployment) -> None:
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
            service_account_email=TASKS_SERVICE_ACCOUNT,
            audience=deployed.audience,
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

    direct = HttpClient(deployed.step.url, id_token=deployed.token()).request(
        "POST", "/tasks/step", {"runId": run_id, "version": 0}
    )
    assert direct == {"outcome": "stale", "steps": 0}
    with pytest.raises(ApiError) as unsigned:
        HttpClient(deployed.step.url).request(
            "POST", "/tasks/step", {"runId": run_id, "version": 0}
        )
    assert unsigned.value.status == 401


def test_an_async_executor_awaits_real_io_on_the_emulators(deployed: Deployment) -> None:
    deployed.api.start("awaiting", {}, run_id="async-1")
    wait_until(lambda: _status(deployed, "async-1") == "completed", 60, "the async run")
    outputs = [r.output for r in history_of(deployed.store, "async-1").all("compute")]
    assert outputs == [{"answer": 42, "slept": ["a", "b"]}]
