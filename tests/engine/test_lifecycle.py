"""Pause and resume, retries, the step limit, and non-mutation."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from refluxo import (
    DefaultErrorHandler,
    ErrorHandler,
    NodeDefinition,
    RetryPolicy,
    Snapshot,
    StepResult,
    WorkflowEngine,
)
from tests.support.clock import FakeClock
from tests.support.engine import chain, echo


def approval_engine() -> WorkflowEngine:
    workflow = {
        "nodes": [
            {"id": "draft", "type": "echo", "data": {"title": "post"}},
            {"id": "review", "type": "approval"},
            {"id": "publish", "type": "echo", "data": {"done": True}},
            {"id": "reject", "type": "echo", "data": {"done": False}},
        ],
        "edges": [
            {"source": "draft", "target": "review"},
            {"source": "review", "target": "publish", "sourceHandle": "approved"},
            {"source": "review", "target": "reject", "sourceHandle": "rejected"},
        ],
    }

    def approval(data: Any, context: Any, payload: Any, globals: Any) -> dict[str, Any]:
        if payload is None:
            return {"data": None, "__pause": True}
        return {"data": payload, "nextHandle": "approved" if payload["ok"] else "rejected"}

    return WorkflowEngine(
        workflow, {"echo": {"executor": echo}, "approval": {"executor": approval}}
    )


async def test_pause_keeps_context_and_resumes_on_the_same_node() -> None:
    engine = approval_engine()
    paused = await engine.execute(initial_node_id="draft")
    assert paused.status == "paused"
    assert paused.current_node_id == "review"
    assert list(paused.context) == ["draft"]

    done = await engine.execute(snapshot=paused, external_payload={"ok": True})
    assert done.status == "completed"
    assert done.context["review"][0].output == {"ok": True}
    assert "publish" in done.context
    assert "reject" not in done.context


async def test_resume_with_rejection_takes_the_other_branch() -> None:
    engine = approval_engine()
    paused = await engine.execute(initial_node_id="draft")
    done = await engine.execute(snapshot=paused, external_payload={"ok": False})
    assert "reject" in done.context
    assert "publish" not in done.context


async def test_completed_and_failed_runs_come_back_as_they_are() -> None:
    engine = approval_engine()
    paused = await engine.execute(initial_node_id="draft")
    done = await engine.execute(snapshot=paused, external_payload={"ok": True})
    again = await engine.execute(snapshot=done, external_payload={"ok": False})
    assert again.status == "completed"
    assert again.version == done.version
    assert again.context == done.context

    failed = done.model_copy(update={"status": "failed"})
    assert (await engine.execute(snapshot=failed)).status == "failed"


def flaky_definition(
    failures: int, policy: dict[str, Any] | None
) -> tuple[NodeDefinition, list[int]]:
    calls: list[int] = []

    def flaky(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        calls.append(1)
        if len(calls) <= failures:
            raise ConnectionError(f"attempt {len(calls)} failed")
        return StepResult({"ok": len(calls)})

    return NodeDefinition(
        flaky, retry_policy=RetryPolicy.model_validate(policy) if policy else None
    ), calls


async def test_fixed_retry_records_errors_and_schedules_the_next_attempt(clock: FakeClock) -> None:
    definition, _ = flaky_definition(2, {"maxAttempts": 3, "interval": 1000, "backoff": "fixed"})
    engine = WorkflowEngine(chain("a", node_type="flaky"), {"flaky": definition}, clock=clock)

    first = await engine.execute(initial_node_id="a")
    assert first.status == "error"
    assert first.retry_state is not None
    assert first.retry_state.node_id == "a"
    assert first.retry_state.attempts == 1
    assert first.retry_state.next_retry_at == clock.now + 1000
    assert first.metadata["pausedReason"] == "Retry attempt 1"
    assert first.context["a"][0].output is None
    assert first.context["a"][0].error == "ConnectionError: attempt 1 failed"

    clock.advance(1000)
    second = await engine.execute(snapshot=first)
    assert second.status == "error"
    assert second.retry_state is not None
    assert second.retry_state.attempts == 2
    assert second.retry_state.next_retry_at == clock.now + 1000

    third = await engine.execute(snapshot=second)
    assert third.status == "completed"
    assert third.retry_state is None
    assert [r.attempt for r in third.context["a"]] == [1, 2, 3]
    assert third.context["a"][-1].output == {"ok": 3}


async def test_exponential_backoff_doubles_the_delay(clock: FakeClock) -> None:
    definition, _ = flaky_definition(
        10, {"maxAttempts": 4, "interval": 100, "backoff": "exponential"}
    )
    engine = WorkflowEngine(chain("a", node_type="flaky"), {"flaky": definition}, clock=clock)
    snapshot = await engine.execute(initial_node_id="a")
    delays = []
    while snapshot.status == "error":
        assert snapshot.retry_state is not None
        assert snapshot.retry_state.next_retry_at is not None
        delays.append(snapshot.retry_state.next_retry_at - clock.now)
        snapshot = await engine.execute(snapshot=snapshot)
    assert delays == [100, 200, 400, 800]
    assert snapshot.status == "failed"
    assert len(snapshot.context["a"]) == 5


async def test_no_policy_fails_immediately() -> None:
    definition, calls = flaky_definition(1, None)
    engine = WorkflowEngine(chain("a", node_type="flaky"), {"flaky": definition})
    final = await engine.execute(initial_node_id="a")
    assert final.status == "failed"
    assert final.retry_state is None
    assert len(calls) == 1


async def test_retry_counter_resets_for_a_different_node(clock: FakeClock) -> None:
    definition, _ = flaky_definition(1, {"maxAttempts": 2, "interval": 1})
    engine = WorkflowEngine(chain("a", "b", node_type="flaky"), {"flaky": definition}, clock=clock)
    first = await engine.execute(initial_node_id="a")
    done = await engine.execute(snapshot=first)
    assert done.context["a"][-1].attempt == 2
    assert done.context["b"][0].attempt == 1


async def test_custom_async_error_handler_is_consulted(clock: FakeClock) -> None:
    seen: list[tuple[str, int]] = []

    class OnlyConnectionErrors(ErrorHandler):
        async def should_retry(
            self, error: BaseException, attempt: int, node: Any, definition: Any
        ) -> bool:
            seen.append((type(error).__name__, attempt))
            return isinstance(error, ConnectionError) and attempt < 3

        async def get_retry_delay(self, attempt: int, node: Any, definition: Any) -> int:
            return 7

    definition, _ = flaky_definition(5, None)
    engine = WorkflowEngine(
        chain("a", node_type="flaky"),
        {"flaky": definition},
        error_handler=OnlyConnectionErrors(),
        clock=clock,
    )
    final = await engine.execute(initial_node_id="a")
    assert final.status == "error"
    assert final.retry_state is not None
    assert final.retry_state.next_retry_at == clock.now + 7
    final = await engine.execute(snapshot=await engine.execute(snapshot=final))
    assert final.status == "failed"
    assert seen == [("ConnectionError", 1), ("ConnectionError", 2), ("ConnectionError", 3)]


def test_default_error_handler_policy_arithmetic() -> None:
    handler = DefaultErrorHandler()
    fixed = NodeDefinition(echo, retry_policy={"maxAttempts": 2, "interval": 50})  # type: ignore[arg-type]
    node: Any = None
    assert handler.should_retry(RuntimeError(), 1, node, fixed) is True
    assert handler.should_retry(RuntimeError(), 2, node, fixed) is True
    assert handler.should_retry(RuntimeError(), 3, node, fixed) is False
    assert handler.get_retry_delay(3, node, fixed) == 50
    expo = NodeDefinition(
        echo, retry_policy=RetryPolicy(max_attempts=9, interval=10, backoff="exponential")
    )
    assert [handler.get_retry_delay(a, node, expo) for a in (1, 2, 3, 4)] == [10, 20, 40, 80]
    assert handler.should_retry(RuntimeError(), 1, node, NodeDefinition(echo)) is False


def test_retry_policy_reads_numbers_as_typescript_does_and_rejects_nonsense() -> None:
    assert RetryPolicy.model_validate({"maxAttempts": "3", "interval": "250"}).max_attempts == 3
    # @refluxo/core takes any backoff (all but "exponential" are fixed) and any number.
    assert RetryPolicy.model_validate({"maxAttempts": 1, "interval": 1, "backoff": "linear"})
    assert RetryPolicy.model_validate({"maxAttempts": -1, "interval": 1.5}).interval == 1.5
    with pytest.raises(ValueError, match=r"max_attempts|maxAttempts"):
        RetryPolicy.model_validate({"maxAttempts": "many", "interval": 1})


async def test_step_limit_fails_the_run() -> None:
    workflow = {
        "nodes": [{"id": "a", "type": "echo"}, {"id": "b", "type": "echo"}],
        "edges": [{"source": "a", "target": "b"}, {"source": "b", "target": "a"}],
    }
    engine = WorkflowEngine(workflow, {"echo": {"executor": echo}})
    final = await engine.execute(initial_node_id="a", step_limit=3)
    assert final.status == "failed"
    assert final.metadata["failedReason"] == "Step limit exceeded"
    assert len(final.context["a"]) + len(final.context["b"]) == 3


async def test_execute_step_never_mutates_its_argument(clock: FakeClock) -> None:
    definition, _ = flaky_definition(1, {"maxAttempts": 1, "interval": 5})
    engine = WorkflowEngine(chain("a", "b", node_type="flaky"), {"flaky": definition}, clock=clock)
    snapshots = [engine.create_initial_snapshot("w", "a")]
    for _ in range(3):
        before = copy.deepcopy(snapshots[-1].model_dump(mode="json"))
        snapshots.append(await engine.execute_step(snapshots[-1]))
        assert snapshots[-2].model_dump(mode="json") == before
    assert [s.status for s in snapshots] == ["active", "error", "active", "completed"]
    # Earlier snapshots still see exactly their own history.
    assert len(snapshots[1].context["a"]) == 1
    assert len(snapshots[3].context["a"]) == 2


async def test_stepping_an_old_snapshot_again_forks_without_disturbing_either(
    clock: FakeClock,
) -> None:
    engine = WorkflowEngine(chain("a", "b", "c"), {"echo": {"executor": echo}}, clock=clock)
    s0 = engine.create_initial_snapshot("w", "a")
    s1 = await engine.execute_step(s0)
    fork_a = await engine.execute_step(s1)
    fork_b = await engine.execute_step(s1)
    assert fork_a.context == fork_b.context
    assert list(s1.context) == ["a"]
    assert len(fork_a.context) == 2


async def test_resumed_snapshot_is_a_new_object(clock: FakeClock) -> None:
    engine = approval_engine()
    paused = await engine.execute(initial_node_id="draft")
    frozen = paused.model_dump(mode="json")
    await engine.execute(snapshot=paused, external_payload={"ok": True})
    assert paused.model_dump(mode="json") == frozen
    assert isinstance(paused, Snapshot)
