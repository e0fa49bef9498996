"""Messages that start, resume and cancel runs: the contract, poison messages, redelivery."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from refluxo.api.events import EventOutcome, handle_message, handle_push
from refluxo.host.embedded import EmbeddedRuntime
from refluxo.runtime import App
from tests.support.clock import FakeClock
from tests.support.stores import history_of


def send(runtime: EmbeddedRuntime, body: Any, message_id: str = "m1", **attributes: str) -> Any:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return handle_message(runtime.service, data, attributes, message_id)


def test_start_resume_cancel(runtime: EmbeddedRuntime) -> None:
    started = send(runtime, {"workflow": "approval"}, "m-1")
    assert started.outcome == EventOutcome.STARTED
    assert started.run_id == "msg-m-1"
    runtime.scheduler.drain()
    resumed = send(runtime, {"action": "resume", "runId": "msg-m-1", "payload": {"ok": True}})
    assert resumed.outcome == EventOutcome.RESUMED
    runtime.scheduler.drain()
    assert runtime.service.get("msg-m-1").status == "completed"

    other = send(runtime, {"workflow": "approval", "runId": "order-7"})
    assert other.run_id == "order-7"
    cancelled = send(runtime, {"action": "cancel", "runId": "order-7", "reason": "spam"})
    assert cancelled.outcome == EventOutcome.CANCELLED
    assert runtime.service.get("order-7").snapshot.metadata["failedReason"] == "spam"


def test_a_redelivered_start_message_starts_one_run(runtime: EmbeddedRuntime) -> None:
    first = send(runtime, {"workflow": "chain", "input": {"a": 1}}, "dup")
    second = send(runtime, {"workflow": "chain", "input": {"a": 1}}, "dup")
    assert first.outcome == EventOutcome.STARTED
    assert second.outcome == EventOutcome.ALREADY_STARTED
    assert len(runtime.service.list().runs) == 1


def test_attributes_route_the_message(runtime: EmbeddedRuntime) -> None:
    result = send(runtime, {"input": 5}, "m2", workflow="chain", runId="from-attributes")
    assert result.outcome == EventOutcome.STARTED
    assert runtime.service.get("from-attributes").input == 5


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "JSON object"),
        (b"\xff\xfe", "not JSON"),
        ({"workflow": 3}, "non-empty string"),
        ({}, "missing 'workflow'"),
        ({"workflow": "nope"}, "unknown workflow"),
        ({"action": "explode"}, "unknown action"),
        ({"action": "resume"}, "missing 'runId'"),
        ({"action": "resume", "runId": "ghost", "payload": None}, "no run 'ghost'"),
        ({"action": "resume", "runId": "ghost"}, "a resume needs 'payload'"),
        ({"action": "resume", "runId": "r", "version": "1"}, "'version' must be an integer"),
        ({"workflow": "chain", "runId": "has space"}, "runId must be"),
        (b"x" * (1 << 20 + 1), "over"),
    ],
)
def test_poison_messages_are_rejected_and_acknowledged(
    runtime: EmbeddedRuntime, body: Any, fragment: str
) -> None:
    before = runtime.service.list().runs
    result = send(runtime, body)
    assert result.outcome == EventOutcome.REJECTED
    assert fragment in (result.reason or "")
    assert runtime.service.list().runs == before


def test_a_resume_for_a_run_that_moved_on_is_rejected(runtime: EmbeddedRuntime) -> None:
    send(runtime, {"workflow": "approval", "runId": "r1"})
    runtime.scheduler.drain()
    paused_version = runtime.service.get("r1").version
    assert send(runtime, {"action": "resume", "runId": "r1", "payload": {"ok": True}}).outcome == (
        EventOutcome.RESUMED
    )
    late = send(
        runtime,
        {"action": "resume", "runId": "r1", "payload": {"ok": False}, "version": paused_version},
        "m-late",
    )
    assert late.outcome == EventOutcome.REJECTED
    runtime.scheduler.drain()
    assert history_of(runtime.store, "r1").all("ask")[0].output == {"ok": True}


@pytest.mark.parametrize("run_id", ["abc\n", "\u0665\u0665", "\uff15", " abc", "a" * 129, "-lead"])
def test_a_run_id_is_checked_by_one_rule_on_every_path(
    runtime: EmbeddedRuntime, run_id: str
) -> None:
    from refluxo.runtime.errors import BadRequest

    rejected = send(runtime, {"workflow": "chain", "runId": run_id}, "ids")
    assert rejected.outcome == EventOutcome.REJECTED
    with pytest.raises(BadRequest, match="runId must be"):
        runtime.service.start("chain", None, run_id=run_id)
    assert runtime.service.list().runs == []


def pushed(body: Any, message_id: str, published_at_ms: int) -> dict[str, Any]:
    """A Pub/Sub push envelope, as the events function receives it."""
    stamp = datetime.fromtimestamp(published_at_ms / 1000, UTC)
    return {
        "message": {
            "data": base64.b64encode(json.dumps(body).encode()).decode(),
            "messageId": message_id,
            "publishTime": stamp.strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z",  # nanoseconds
        }
    }


def test_a_redelivered_resume_does_not_answer_the_next_pause(
    app: App, runtime: EmbeddedRuntime, clock: FakeClock
) -> None:
    """Pub/Sub delivers at least once: a copy of a resume without ``version``, delivered
    after the run paused again (a loop back to its approval), resumed that later pause with
    the first answer."""
    app.workflow(
        "ask-until-yes",
        {
            "start": "ask",
            "nodes": [
                {"id": "ask", "type": "approval"},
                {"id": "no", "type": "echo"},
                {"id": "yes", "type": "echo"},
            ],
            "edges": [
                {"source": "ask", "target": "yes", "sourceHandle": "yes"},
                {"source": "ask", "target": "no", "sourceHandle": "no"},
                {"source": "no", "target": "ask"},
            ],
        },
    )
    run_id = runtime.service.start("ask-until-yes").record.run_id
    runtime.scheduler.drain()
    clock.advance(5_000)
    answer = pushed({"action": "resume", "runId": run_id, "payload": {"ok": False}}, "r1", clock())
    assert handle_push(runtime.service, answer, "e1").outcome == EventOutcome.RESUMED
    clock.advance(5_000)
    runtime.scheduler.drain()
    paused_again = runtime.service.get(run_id)
    assert paused_again.status == "paused"

    copy = handle_push(runtime.service, answer, "e1")
    assert copy.outcome == EventOutcome.REJECTED
    assert "it was meant for an earlier pause" in (copy.reason or "")
    assert runtime.service.get(run_id) == paused_again

    clock.advance(5_000)
    later = pushed({"action": "resume", "runId": run_id, "payload": {"ok": True}}, "r2", clock())
    assert handle_push(runtime.service, later, "e2").outcome == EventOutcome.RESUMED
    runtime.scheduler.drain()
    assert runtime.service.get(run_id).status == "completed"


def test_a_resume_published_just_before_the_pause_by_a_skewed_clock_is_taken(
    runtime: EmbeddedRuntime, clock: FakeClock
) -> None:
    run_id = runtime.service.start("approval").record.run_id
    runtime.scheduler.drain()
    skewed = clock() - 200  # Pub/Sub's clock a little behind the runtime's
    answer = pushed({"action": "resume", "runId": run_id, "payload": {"ok": True}}, "r1", skewed)
    assert handle_push(runtime.service, answer, "e1").outcome == EventOutcome.RESUMED


def test_a_resume_with_the_runs_version_is_taken_whenever_it_was_published(
    runtime: EmbeddedRuntime, clock: FakeClock
) -> None:
    """``version`` names the pause: a reply published just before the pause committed (a
    race with the screen that showed it) was refused by its publish time."""
    run_id = runtime.service.start("approval").record.run_id
    runtime.scheduler.drain()
    version = runtime.service.get(run_id).version
    early = clock() - 3_000
    body = {"action": "resume", "runId": run_id, "payload": {"ok": True}, "version": version}
    assert handle_push(runtime.service, pushed(body, "r1", early), "e1").outcome == (
        EventOutcome.RESUMED
    )


@pytest.mark.parametrize(
    "stamp", ["yesterday", "2024-02-30T00:00:00Z", "2024-01-01T00:00:00", 1714557600]
)
def test_a_push_whose_publish_time_is_no_time_is_rejected(
    runtime: EmbeddedRuntime, stamp: Any
) -> None:
    """Pub/Sub always stamps one; one that cannot be read turned the resume guard off."""
    run_id = runtime.service.start("approval").record.run_id
    runtime.scheduler.drain()
    envelope = pushed({"action": "resume", "runId": run_id, "payload": None}, "r1", 0)
    envelope["message"]["publishTime"] = stamp
    result = handle_push(runtime.service, envelope, "e1")
    assert result.outcome == EventOutcome.REJECTED
    assert "publishTime is not an RFC 3339 time" in (result.reason or "")
    assert runtime.service.get(run_id).status == "paused"
