"""What a node pauses with (``StepResult(data, pause=True)``: the question a human answers)
is kept in ``metadata["pausedWith"]`` while the run waits, masked like an output, and removed
once the node has run again."""

from __future__ import annotations

import datetime
from typing import Any

from refluxo import NodeDefinition, RedactionPlugin, Snapshot, StepResult, WorkflowEngine
from tests.support.engine import chain

SECRET = "sk_live_0123456789"


def ask(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
    if payload is None:
        return StepResult(
            {"question": "Ship order 7?", "note": f"Bearer {globals['key']}"}, pause=True
        )
    return StepResult({"answer": payload["ok"]})


async def test_the_pause_data_waits_with_the_run_and_goes_once_the_node_has_run() -> None:
    engine = WorkflowEngine(chain("a"), {"echo": NodeDefinition(ask)}, plugins=[RedactionPlugin()])
    paused = await engine.execute(initial_node_id="a", globals={"key": SECRET})

    assert paused.status == "paused"
    assert paused.metadata["pausedWith"] == {
        "question": "Ship order 7?",
        "note": "Bearer [REDACTED]",
    }
    stored = paused.model_dump_json()
    assert SECRET not in stored
    reloaded = Snapshot.from_json(stored)
    assert reloaded.metadata["pausedWith"]["question"] == "Ship order 7?"

    done = await engine.execute(
        snapshot=reloaded, external_payload={"ok": True}, globals={"key": SECRET}
    )
    assert done.status == "completed"
    assert "pausedWith" not in done.metadata
    assert done.context["a"][-1].output == {"answer": True}


async def test_a_pause_without_data_records_none_and_a_new_pause_replaces_the_old() -> None:
    calls: list[Any] = []

    def twice(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        calls.append(payload)
        if payload is None:
            return StepResult({"question": "first"}, pause=True)
        if payload == "again":
            return StepResult(pause=True)
        return StepResult(payload)

    engine = WorkflowEngine(chain("a"), {"echo": NodeDefinition(twice)})
    first = await engine.execute(initial_node_id="a")
    assert first.metadata["pausedWith"] == {"question": "first"}
    second = await engine.execute(snapshot=first, external_payload="again")
    assert second.status == "paused"
    assert "pausedWith" not in second.metadata


async def test_pause_data_json_cannot_hold_fails_the_node() -> None:
    def odd(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        return StepResult({"choices": [object()]}, pause=True)

    engine = WorkflowEngine(chain("a"), {"echo": NodeDefinition(odd)})
    final = await engine.execute(initial_node_id="a")
    assert final.status == "failed"
    assert "what a node pauses with must be JSON data" in final.metadata["failedReason"]
    assert "(at choices[0])" in final.metadata["failedReason"]
    assert "pausedWith" not in final.metadata


async def test_pause_data_with_a_json_form_is_kept_in_it() -> None:
    def asks(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        return StepResult({"choices": ("yes", "no"), "by": datetime.date(2030, 1, 2)}, pause=True)

    engine = WorkflowEngine(chain("a"), {"echo": NodeDefinition(asks)})
    paused = await engine.execute(initial_node_id="a")
    held = {"choices": ["yes", "no"], "by": "2030-01-02"}
    assert paused.metadata["pausedWith"] == held
    assert Snapshot.from_json(paused.to_json()).metadata["pausedWith"] == held
