"""The fast snapshot codec (Snapshot.to_json / Snapshot.from_json): wire-compatible with
model_dump_json / model_validate_json, lazy about historical results, and still refusing
invalid ones."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from pydantic import ValidationError

from refluxo import NodeResult, Snapshot, StepResult, WorkflowEngine
from refluxo.snapshot_json import (
    InvalidResult,
    LazyContext,
    snapshot_from_json,
    snapshot_to_json,
)
from tests.engine.test_wire import snapshots

DATA = Path(__file__).parent.parent / "data"


def _clock() -> Any:
    ticks = iter(range(1_000, 10**9))
    return lambda: next(ticks)


@given(snapshots)
@settings(max_examples=150)
def test_reads_and_writes_the_wire_shape_as_the_model_does(raw: dict[str, Any]) -> None:
    for text in (json.dumps(raw), json.dumps(raw, indent=2, ensure_ascii=False)):
        snapshot = Snapshot.from_json(text)
        assert snapshot == Snapshot.model_validate(raw)
        assert json.loads(snapshot.to_json()) == raw
        assert json.loads(snapshot.model_dump_json()) == raw
    model = Snapshot.model_validate(raw)
    assert json.loads(model.to_json()) == raw


@given(snapshots)
@settings(max_examples=100)
def test_appending_to_a_decoded_context_encodes_like_the_model(raw: dict[str, Any]) -> None:
    result = NodeResult(output={"x": 1}, timestamp=5, attempt=2)
    for text in (json.dumps(raw), json.dumps(raw, indent=1)):
        decoded = Snapshot.from_json(text)
        model = Snapshot.model_validate(raw)
        for node_id in [*list(model.context)[:2], "fresh", 'q"\\é']:
            lazy_context = decoded.context.appended(node_id, result)
            plain = model.context.appended(node_id, result)
            assert lazy_context == plain
            assert dict(lazy_context).keys() == dict(plain).keys()
            assert node_id in lazy_context
            lazy = decoded.model_copy(update={"context": lazy_context})
            expected = json.loads(model.model_copy(update={"context": plain}).model_dump_json())
            assert json.loads(lazy.to_json()) == expected
            again = Snapshot.from_json(lazy.to_json())
            assert json.loads(again.to_json()) == expected


def test_a_typescript_snapshot_round_trips() -> None:
    text = (DATA / "ts_snapshot_error.json").read_text()
    raw = json.loads(text)
    snapshot = Snapshot.from_json(text)
    assert isinstance(snapshot.context, LazyContext)
    assert snapshot == Snapshot.model_validate(raw)
    assert json.loads(snapshot_to_json(snapshot)) == raw
    assert snapshot_from_json(text.encode()) == snapshot


def test_untouched_results_go_out_as_the_bytes_they_came_in_as() -> None:
    text = (
        b'{"workflowId":"w","status":"active","currentNodeId":"b",'
        b'"context":{"a":[{"output":1.50,"timestamp":1}]}}'
    )
    snapshot = Snapshot.from_json(text)
    assert b'"a":[{"output":1.50,"timestamp":1}]' in snapshot.to_json()
    after = snapshot.model_copy(
        update={"context": snapshot.context.appended("b", NodeResult(2, 3))}
    )
    assert b'{"a":[{"output":1.50,"timestamp":1}],"b":[' in after.to_json()


def test_an_invalid_historical_result_is_refused_when_read() -> None:
    text = (
        '{"workflowId":"w","status":"active","currentNodeId":"b",'
        '"context":{"a":[{"output":1}],"b":[{"output":2,"timestamp":3}]}}'
    )
    with pytest.raises(ValidationError):
        Snapshot.model_validate_json(text)
    snapshot = Snapshot.from_json(text)  # lazy: the bad result is not read yet
    assert snapshot.context["b"][0].output == 2
    with pytest.raises(InvalidResult, match=r"node 'a' .*result 0: timestamp: field required"):
        snapshot.context["a"]
    with pytest.raises(ValueError, match="timestamp"):
        snapshot.model_dump_json()
    assert isinstance(snapshot.context, LazyContext)
    with pytest.raises(InvalidResult):
        snapshot.context.validate()


async def test_a_step_reaching_a_node_with_an_invalid_result_refuses_it() -> None:
    engine = WorkflowEngine(
        {"nodes": [{"id": "a", "type": "t"}]}, {"t": {"executor": lambda *_: StepResult(1)}}
    )
    snapshot = Snapshot.from_json(
        '{"workflowId":"w","status":"active","currentNodeId":"a",'
        '"context":{"a":[{"output":1,"timestamp":"never"}]}}'
    )
    with pytest.raises(InvalidResult, match="timestamp"):
        await engine.execute_step(snapshot)


@pytest.mark.parametrize(
    "text",
    [
        '{"workflowId":"w","status":"active","currentNodeId":null,"context":{"a":[}',
        '{"workflowId":"w","status":"active","currentNodeId":null,"context":[]}',
        '{"workflowId":"w","status":"active","currentNodeId":null,"context":null}',
        '{"workflowId":"w","status":"nope","currentNodeId":null,"context":{}}',
        '{"status":"active","currentNodeId":null,"context":{}}',
        "[]",
        "",
    ],
)
def test_malformed_or_invalid_snapshots_are_refused_on_load(text: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - msgspec's and pydantic's errors both
        Snapshot.from_json(text)


async def test_a_stepwise_run_through_the_codec_equals_one_through_the_model() -> None:
    def iterate(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        index = len(context.get("it", []))
        if index < 4:
            return StepResult({"i": index, "s": 'q"\\é'}, next_handle="loop")
        return StepResult({"done": True}, next_handle="done")

    workflow = {
        "nodes": [
            {"id": "it", "type": "it"},
            {"id": "body", "type": "echo"},
            {"id": "end", "type": "echo"},
        ],
        "edges": [
            {"source": "it", "target": "body", "sourceHandle": "loop"},
            {"source": "body", "target": "it"},
            {"source": "it", "target": "end", "sourceHandle": "done"},
        ],
    }
    definitions = {"it": {"executor": iterate}, "echo": {"executor": lambda *_: StepResult(0)}}
    finals = []
    for fast in (True, False):
        engine = WorkflowEngine(workflow, definitions, clock=_clock())
        snapshot = engine.create_initial_snapshot("w", "it")
        while snapshot.status == "active":
            if fast:
                snapshot = await engine.execute_step(Snapshot.from_json(snapshot.to_json()))
            else:
                text = snapshot.model_dump_json()
                snapshot = await engine.execute_step(Snapshot.model_validate_json(text))
        finals.append(snapshot)
    fast_final, model_final = finals
    assert fast_final == model_final
    assert json.loads(fast_final.to_json()) == json.loads(model_final.model_dump_json())
    assert len(fast_final.context["body"]) == 4


def test_an_absent_context_is_empty() -> None:
    snapshot = Snapshot.from_json('{"workflowId":"w","status":"paused","currentNodeId":"a"}')
    assert dict(snapshot.context) == {}
    assert json.loads(snapshot.to_json())["context"] == {}


async def test_a_step_to_a_new_node_neither_splits_nor_validates_the_history() -> None:
    engine = WorkflowEngine(
        {
            "nodes": [{"id": "a", "type": "t"}, {"id": "b", "type": "t"}],
            "edges": [{"source": "a", "target": "b"}],
        },
        {"t": {"executor": lambda *_: StepResult(1)}},
    )
    first = await engine.execute_step(engine.create_initial_snapshot("w", "a"))
    loaded = Snapshot.from_json(first.to_json())  # the header names "b" as the current node
    after = await engine.execute_step(loaded)
    assert isinstance(after.context, LazyContext)
    assert after.context._base._split is None
    assert after.context._base.validated == {}
    assert json.loads(after.to_json())["context"]["b"][0]["output"] == 1


def test_a_key_spelled_with_escapes_is_found() -> None:
    snapshot = Snapshot.from_json(
        '{"workflowId":"w","status":"active","currentNodeId":"n0","metadata":{"q":"a\\"b"},'
        '"context":{"n\\u0030":[{"output":"x\\ny","timestamp":1}]}}'
    )
    assert "n0" in snapshot.context
    assert snapshot.context["n0"][0].output == "x\ny"
    assert "n1" not in snapshot.context


def test_an_escape_outside_the_context_keeps_the_search() -> None:
    snapshot = Snapshot.from_json(
        '{"workflowId":"w","status":"active","currentNodeId":"b","metadata":{"q":"a\\"b"},'
        '"context":{"a":[{"output":1,"timestamp":1}]}}'
    )
    assert isinstance(snapshot.context, LazyContext)
    assert "b" not in snapshot.context
    assert snapshot.context._base._split is None
    assert "a" in snapshot.context


def test_a_decoded_snapshot_copies_and_pickles() -> None:
    import copy
    import pickle

    snapshot = Snapshot.from_json(
        '{"workflowId":"w","status":"active","currentNodeId":"b",'
        '"context":{"a":[{"output":1,"timestamp":1}]}}'
    )
    after = snapshot.model_copy(
        update={"context": snapshot.context.appended("b", NodeResult(2, 3))}
    )
    assert copy.deepcopy(after) == after
    assert copy.copy(after) == after
    restored = pickle.loads(pickle.dumps(after))
    assert restored == after
    assert Snapshot.from_json(restored.to_json()) == after
    assert restored.to_json() == after.to_json()  # the bytes as they came in, kept


@pytest.mark.parametrize(
    ("key", "node_id"),
    [("\\u0061", "a"), ("x\\/y", "x/y")],
    ids=["unicode-escape", "escaped-slash"],
)
def test_a_node_whose_key_is_spelled_with_an_escape_is_found(key: str, node_id: str) -> None:
    """A key may spell a plain id's characters with an escape (\\u or \\/): it is the same
    node, found, not added again as a second key."""
    text = (
        '{"workflowId": "w", "status": "active", "currentNodeId": "a", "context": {'
        f'"note": [{{"output": "say \\"hi\\"\\n", "timestamp": 1}}], "{key}": '
        '[{"output": 1, "timestamp": 2}]}, "version": 0, "metadata": {}}'
    )
    decoded = Snapshot.from_json(text)
    assert node_id in decoded.context
    grown = decoded.context.appended(node_id, NodeResult(2, 3))
    again = Snapshot.from_json(decoded.model_copy(update={"context": grown}).to_json())
    assert [r.output for r in again.context[node_id]] == [1, 2]
    assert list(again.context) == ["note", node_id]


def test_a_snapshot_with_an_invalid_result_can_still_be_printed() -> None:
    """repr() (a log line, a debugger) names the nodes without validating their results."""
    text = (
        '{"workflowId": "w", "status": "active", "currentNodeId": "a", "context": '
        '{"a": [{"output": 1}]}, "version": 0, "metadata": {}}'
    )
    decoded = Snapshot.from_json(text)
    assert "LazyContext(nodes=['a'])" in repr(decoded)
    with pytest.raises(InvalidResult, match="node 'a'"):
        decoded.context["a"]
