"""Each example workflow runs to its expected end on the embedded default."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from refluxo.host.embedded import EmbeddedRuntime
from refluxo.runtime import App
from refluxo.runtime.ids import idempotency_key
from tests.support.clock import FakeClock
from tests.support.stores import assert_history_consistent, history_of


@pytest.fixture
def examples(clock: FakeClock, tmp_path: Path) -> Iterator[EmbeddedRuntime]:
    from refluxo.examples.app import app as example_app

    app: App = example_app
    original = app.clock
    app.clock = clock
    app._engines.clear()
    runtime = EmbeddedRuntime(app, tmp_path / "examples.db", workers=0, synchronous="NORMAL")
    yield runtime
    runtime.stop()
    app.clock = original
    app._engines.clear()


def outputs(runtime: EmbeddedRuntime, run_id: str) -> dict[str, object]:
    assert_history_consistent(runtime.store, run_id)
    return {e.node_id: e.result.output for e in runtime.store.timeline(run_id)}


@pytest.mark.parametrize(("answer", "branch"), [(True, "publish"), (False, "reject")])
def test_content_approval_pauses_resumes_and_branches(
    examples: EmbeddedRuntime, answer: bool, branch: str
) -> None:
    run = examples.service.start("content-approval", {"title": "Launch post"}).record
    examples.scheduler.drain()
    paused = examples.service.get(run.run_id)
    assert paused.status == "paused"
    assert paused.snapshot.current_node_id == "review"

    examples.service.resume(run.run_id, {"approved": answer, "by": "grace", "comment": "typos"})
    examples.scheduler.drain()
    final = examples.service.get(run.run_id)
    assert final.status == "completed"
    result = outputs(examples, run.run_id)
    assert branch in result
    assert ({"publish", "reject"} - {branch}).isdisjoint(result)
    expected = "Published 'Launch post' (approved by grace)" if answer else "Rejected: typos"
    assert result[branch] == {"sent": expected}


def test_api_aggregation_combines_results_with_expressions(examples: EmbeddedRuntime) -> None:
    run = examples.service.start("api-aggregation").record
    examples.scheduler.drain()
    assert examples.service.get(run.run_id).status == "completed"
    assert outputs(examples, run.run_id)["report"] == {
        "greeting": "Hello Ada from Lisbon",
        "orderCount": 2,
        "totalWithTax": 144,
        "bigSpender": True,
        "firstExpensive": "lamp",
        "outside": "picnic",
    }


def test_loop_visits_every_item_and_sums(examples: EmbeddedRuntime) -> None:
    run = examples.service.start("loop", {"items": [1, 2, 3, 4]}).record
    examples.scheduler.drain()
    history = history_of(examples.store, run.run_id)
    assert [r.output for r in history.all("square")] == [1, 4, 9, 16]
    assert history.all("sum")[0].output == 30
    assert history.count("each") == 5


def test_flaky_node_is_retried_with_exponential_backoff(
    examples: EmbeddedRuntime, clock: FakeClock
) -> None:
    run = examples.service.start("flaky-retry", {"failures": 2}).record
    examples.scheduler.drain()
    delays = []
    for _ in range(2):
        record = examples.service.get(run.run_id)
        assert record.status == "error"
        assert record.snapshot.retry_state is not None
        delay = int(record.snapshot.retry_state.next_retry_at or 0) - clock.now
        delays.append(delay)
        clock.advance(delay)
        examples.scheduler.drain()
    assert delays == [1000, 2000]
    final = examples.service.get(run.run_id)
    assert final.status == "completed"
    charge = outputs(examples, run.run_id)["charge"]
    # One key for the whole visit: every attempt charged with the same key.
    key = idempotency_key(run.run_id, "charge", 0)
    assert charge == {"amount": 42, "attempt": 3, "idempotencyKey": key}


def test_timed_wait_resumes_itself_when_due(examples: EmbeddedRuntime, clock: FakeClock) -> None:
    run = examples.service.start("timed-wait", {"seconds": 90}).record
    examples.scheduler.drain()
    waiting = examples.service.get(run.run_id)
    assert waiting.status == "paused"
    assert waiting.snapshot.metadata["resumeAt"] == clock.now + 90_000

    clock.advance(89_999)
    assert examples.scheduler.drain() == 0
    clock.advance(1)
    examples.scheduler.drain()
    assert examples.service.get(run.run_id).status == "completed"
    result = outputs(examples, run.run_id)
    assert result["remind_later"] == {"waitedUntil": clock.now, "endedBy": "timer"}
    assert result["remind"] == {"sent": "Reminder after 90 s"}


def test_enrich_records_maps_a_thousand_child_runs_then_aggregates(
    examples: EmbeddedRuntime,
) -> None:
    run = examples.service.start("enrich-records", {"count": 1000}).record
    while examples.scheduler.drain():
        pass
    final = examples.service.get(run.run_id)
    assert final.status == "completed"
    report = outputs(examples, run.run_id)["report"]
    spends = [(i * 37) % 500 for i in range(1000)]
    assert report == {
        "records": 1000,
        "byTier": {
            "bronze": sum(1 for s in spends if s < 200),
            "silver": sum(1 for s in spends if 200 <= s < 400),
            "gold": sum(1 for s in spends if s >= 400),
        },
        "failed": [],
    }
    assert final.snapshot.metadata["childRuns"]["ended"] == 1000
