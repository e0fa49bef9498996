"""The edges of the snapshot wire form: what both codecs (``Snapshot.to_json`` /
``from_json`` and ``model_dump_json`` / ``model_validate_json``) read, write and refuse, and
where they agree with ``@refluxo/core`` (``JSON.parse`` / ``JSON.stringify`` and spreads)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import ValidationError

from refluxo import NodeResult, Snapshot, StepResult, WorkflowDefinition, WorkflowEngine
from refluxo.model import (
    MAX_JSON_DEPTH,
    MAX_METADATA_DEPTH,
    MAX_OUTPUT_DEPTH,
    SnapshotTooDeep,
)
from refluxo.snapshot_json import InvalidResult
from tests.engine.ts_core import CLOCK, echo, load

READERS: list[Callable[[str | bytes], Snapshot]] = [
    Snapshot.model_validate_json,
    Snapshot.from_json,
]


def _doc(context: str = "{}", metadata: str = "{}", extra: str = "") -> str:
    return (
        '{"workflowId":"w","status":"active","currentNodeId":"a","context":'
        + context
        + ',"version":1,"metadata":'
        + metadata
        + extra
        + "}"
    )


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def _nested_value(depth: int) -> Any:
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value


def _with_output(output: str, more: str = ',"attempt":1') -> str:
    return _doc('{"a":[{"output":' + output + ',"timestamp":1' + more + "}]}")


def _both_ways(snapshot: Snapshot) -> bytes:
    """Both encoders write the same bytes, and both readers read each back to the same."""
    written = snapshot.to_json()
    assert snapshot.model_dump_json().encode() == written
    for read in READERS:
        again = read(written)
        assert again.to_json() == written
        assert again.model_dump_json().encode() == written
    return written


def _engine(executor: Any, workflow: dict[str, Any] | None = None) -> WorkflowEngine:
    return WorkflowEngine(
        workflow or {"nodes": [{"id": "a", "type": "t"}]},
        {"t": {"executor": executor}, "echo": {"executor": echo}},
        clock=lambda: CLOCK,
    )


# 1. Depth: one limit, both codecs, both directions.


def test_the_depth_limit_is_what_both_readers_read() -> None:
    assert (MAX_JSON_DEPTH, MAX_OUTPUT_DEPTH, MAX_METADATA_DEPTH) == (201, 197, 199)
    for read in READERS:
        deepest = read(_with_output(_nested(MAX_OUTPUT_DEPTH)))
        assert json.loads(deepest.to_json()) == json.loads(_with_output(_nested(197)))
        deep_metadata = read(_doc(metadata='{"m":' + _nested(MAX_METADATA_DEPTH) + "}"))
        _both_ways(deep_metadata)


@pytest.mark.parametrize("depth", [MAX_OUTPUT_DEPTH + 1, 400, 1_500])
def test_a_too_deep_output_is_refused_in_plain_words_by_both_readers(depth: int) -> None:
    text = _with_output(_nested(depth))
    with pytest.raises(SnapshotTooDeep, match="nests deeper than 201 levels"):
        Snapshot.model_validate_json(text)
    try:
        lazy = Snapshot.from_json(text)
    except SnapshotTooDeep:
        return  # deeper than the top-level scan goes: refused on load
    with pytest.raises(InvalidResult, match=r"node 'a'.*nests deeper than a snapshot may"):
        lazy.context["a"]


@pytest.mark.parametrize("depth", [MAX_METADATA_DEPTH + 1, 1_500])
def test_too_deep_metadata_is_refused_by_both_readers(depth: int) -> None:
    text = _doc(metadata='{"m":' + _nested(depth) + "}")
    for read in READERS:
        with pytest.raises(SnapshotTooDeep, match="201 levels"):
            read(text)


async def test_an_output_too_deep_to_store_fails_its_node() -> None:
    at_limit = await _engine(lambda *_: StepResult(_nested_value(MAX_OUTPUT_DEPTH))).execute(
        initial_node_id="a"
    )
    assert at_limit.status == "completed"
    assert len(_both_ways(at_limit)) > 0

    too_deep = await _engine(lambda *_: StepResult(_nested_value(MAX_OUTPUT_DEPTH + 1))).execute(
        initial_node_id="a"
    )
    assert too_deep.status == "failed"
    error = too_deep.context["a"][0].error
    assert error is not None
    assert error.startswith("SnapshotTooDeep: the output nests deeper than 197 levels")
    _both_ways(too_deep)  # what failed is still stored, and reads back


def test_values_built_in_python_are_held_to_the_same_limit() -> None:
    NodeResult(output=_nested_value(MAX_OUTPUT_DEPTH), timestamp=1)
    with pytest.raises(ValidationError, match="nests deeper than 197 levels"):
        NodeResult(output=_nested_value(MAX_OUTPUT_DEPTH + 1), timestamp=1)
    base = {"workflowId": "w", "status": "active", "currentNodeId": None}
    Snapshot.model_validate({**base, "metadata": {"m": _nested_value(MAX_METADATA_DEPTH)}})
    with pytest.raises(ValidationError, match="deeper than 199 levels"):
        Snapshot.model_validate({**base, "metadata": {"m": _nested_value(MAX_METADATA_DEPTH + 1)}})


# 2. Lone surrogates: JSON.parse takes them; refluxo refuses them, in the same words.


@pytest.mark.parametrize(
    "text",
    [
        _with_output('"\\ud800"'),
        _doc(metadata='{"m":"\\udc00x"}'),
        _doc(metadata='{"m":"a\\ud83d"}'),
    ],
)
def test_a_lone_surrogate_is_refused_by_both_readers(text: str) -> None:
    for read in READERS:
        with pytest.raises(ValueError, match="lone UTF-16 surrogate"):
            read(text)


@pytest.mark.parametrize(
    "output", ["\ud800", ["ok", {"k": "x\udfff"}], {"\ud83d": 1}, ("é", "\ud83d")]
)
async def test_an_output_holding_a_lone_surrogate_fails_its_node(output: Any) -> None:
    snapshot = await _engine(lambda *_: StepResult(output)).execute(initial_node_id="a")
    assert snapshot.status == "failed"
    error = snapshot.context["a"][0].error
    assert error is not None
    assert error.startswith("ValueError: the output holds a lone UTF-16 surrogate")
    _both_ways(snapshot)  # the failure is stored, and reads back
    with pytest.raises(ValidationError, match="lone UTF-16 surrogate"):
        NodeResult(output=output, timestamp=1)


async def test_non_ascii_text_is_stored_as_is() -> None:
    output = {"é": ["日本", "\U0001f600"], "a": "b"}
    snapshot = await _engine(lambda *_: StepResult(output)).execute(initial_node_id="a")
    assert snapshot.status == "completed"
    assert json.loads(_both_ways(snapshot))["context"]["a"][0]["output"] == output


def test_a_valid_surrogate_pair_reads_as_one_character() -> None:
    text = _with_output('"\\ud83d\\ude00"')
    for read in READERS:
        snapshot = read(text)
        assert snapshot.context["a"][0].output == "\U0001f600"
        for written in (snapshot.to_json(), snapshot.model_dump_json()):
            assert json.loads(written) == json.loads(text)


# 3. NaN and the infinities: both readers alike, written as JSON.stringify writes them.


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_read_alike_and_are_written_as_null(literal: str) -> None:
    texts = [_with_output(literal), _doc(metadata='{"m":[' + literal + "]}")]
    for text in texts:
        written = {read(text).to_json() for read in READERS}
        dumped = {read(text).model_dump_json().encode() for read in READERS}
        assert len(written | dumped) == 1
        assert literal.encode() not in written.pop()
    assert json.loads(Snapshot.from_json(texts[0]).to_json())["context"]["a"][0]["output"] is None


# 4. A history in any valid spelling: both codecs write the same, both read it back.


@pytest.mark.parametrize(
    "results",
    [
        # TypeScript keeps a result's unknown keys, and an absent attempt absent.
        ('[{"output":1,"timestamp":5,"attempt":1,"zz":{"k":[1]}}]'),
        ('[{"output":1,"timestamp":5}]'),
        ('[{"timestamp":5,"error":"Error: x","output":null,"attempt":2}]'),
        f'[{{"output":{2**53 + 1},"timestamp":5,"attempt":1}}]',
        f'[{{"output":{2**64 + 1},"timestamp":5,"attempt":1}}]',
    ],
)
def test_both_codecs_write_the_same_history_for_any_valid_spelling(results: str) -> None:
    text = _doc('{"a":' + results + "}")
    outs = set()
    for read in READERS:
        snapshot = read(text)
        for written in (snapshot.to_json(), snapshot.model_dump_json().encode()):
            outs.add(json.dumps(json.loads(written), sort_keys=True))
            for again in READERS:
                assert json.loads(again(written).to_json()) == json.loads(written)
    assert len(outs) == 1
    assert json.loads(outs.pop())["context"]["a"] == json.loads(results)


def test_an_absent_attempt_reads_as_the_first() -> None:
    for read in READERS:
        result = read(_with_output("1", more=""))
        assert result.context["a"][0].attempt == 1
        assert not result.context["a"][0].has_attempt
    assert NodeResult(output=1, timestamp=5).has_attempt  # built here: written out


@pytest.mark.parametrize("timestamp", ['"5"', "5.0", "5.5", "true"])
def test_a_timestamp_that_is_not_an_integer_is_an_invalid_result_for_both(timestamp: str) -> None:
    text = _with_output("1", more=',"timestamp":' + timestamp).replace('"timestamp":1,', "")
    with pytest.raises(ValidationError, match="timestamp"):
        Snapshot.model_validate_json(text)
    with pytest.raises(InvalidResult, match="result 0: timestamp: input should be a valid integer"):
        Snapshot.from_json(text).context["a"]


def test_bytes_that_are_not_utf8_are_refused_by_both_readers() -> None:
    text = _with_output('"\xff"').encode("latin-1")
    with pytest.raises(ValueError, match="UTF-8"):
        Snapshot.from_json(text)
    with pytest.raises(ValueError, match="unicode"):
        Snapshot.model_validate_json(text)


# 5. An invalid historical result, read late, says where and what in plain words.


def test_an_invalid_result_read_late_names_the_node_the_index_and_the_problem() -> None:
    text = _doc(
        '{"ok":[{"output":1,"timestamp":1,"attempt":1}],'
        '"bad":[{"output":1,"timestamp":1,"attempt":1},{"output":2,"attempt":"x","error":7}]}'
    )
    snapshot = Snapshot.from_json(text)
    with pytest.raises(InvalidResult) as caught:
        snapshot.context["bad"]
    message = str(caught.value)
    assert message.startswith("invalid result of node 'bad' in the snapshot: result 1: ")
    assert "timestamp: field required" in message
    assert "error: input should be a valid string" in message
    assert "attempt: input should be a valid integer" in message
    assert "pydantic" not in message
    assert "input_value" not in message
    assert isinstance(caught.value, ValueError)
    assert caught.value.node_id == "bad"


# 6. Key order and float spelling.


async def test_both_encoders_write_the_same_bytes_in_typescripts_key_order() -> None:
    engine = _engine(
        lambda *_: StepResult({"f": 1.5, "g": 2.0}),
        {
            "nodes": [{"id": "a", "type": "t"}, {"id": "b", "type": "echo", "data": {"x": 1}}],
            "edges": [{"source": "a", "target": "b"}],
        },
    )
    snapshot = await engine.execute(initial_node_id="a", workflow_id="f", step_limit=1)
    written = _both_ways(snapshot)
    assert list(json.loads(written)) == [
        "workflowId",
        "status",
        "currentNodeId",
        "context",
        "version",
        "metadata",
        "lastStartedAt",
        "totalExecutionTime",
    ]
    # Python spells an integral float 2.0 where JSON.stringify writes 2: the same number.
    assert b'"output":{"f":1.5,"g":2.0}' in written
    stepped = await engine.execute_step(Snapshot.from_json(written))
    assert stepped.to_json() == stepped.model_dump_json().encode()


# 7. Unknown top-level keys ride along, as {...snapshot} keeps them.


async def test_unknown_top_level_keys_survive_load_step_and_dump_in_both_codecs() -> None:
    text = _doc(extra=',"tenant":{"id":7},"zeta":[1]')
    engine = _engine(lambda *_: StepResult(1))
    for read in READERS:
        stepped = await engine.execute_step(read(text))
        assert stepped.model_extra == {"tenant": {"id": 7}, "zeta": [1]}
        written = _both_ways(stepped)
        wire = json.loads(written)
        assert wire["tenant"] == {"id": 7}
        assert wire["zeta"] == [1]
        assert wire["status"] == "completed"
        assert list(wire)[-2:] == ["tenant", "zeta"]


# 8. snake_case keys: read by both codecs (TypeScript ignores them), written camelCase.


def test_snake_case_top_level_keys_are_read_by_both_codecs_and_written_camel_case() -> None:
    text = (
        '{"workflow_id":"w","status":"error","current_node_id":"a","context":{},'
        '"retry_state":{"node_id":"a","attempts":1,"next_retry_at":5}}'
    )
    for read in READERS:
        snapshot = read(text)
        assert snapshot.workflow_id == "w"
        assert snapshot.retry_state is not None
        wire = json.loads(_both_ways(snapshot))
        assert wire["workflowId"] == "w"
        assert wire["retryState"] == {"nodeId": "a", "attempts": 1, "nextRetryAt": 5}
        assert "workflow_id" not in wire


# 9. A handle returned as None is no handle (TypeScript: null, which only a null edge has).


@pytest.mark.parametrize("shape", ["dict", "step_result"])
async def test_a_none_handle_takes_the_edge_without_a_handle_not_a_null_one(shape: str) -> None:
    recorded = load("null_return_handle.json")
    ts_visits = {case["name"]: list(case["end"]["context"]) for case in recorded["cases"]}
    assert ts_visits == {
        "nullToNullEdgeAndPlainEdge": ["a", "b"],
        "nullToPlainEdgeOnly": ["a"],
    }

    def pick(*_: Any) -> Any:
        if shape == "dict":
            return {"data": 1, "nextHandle": None}
        return StepResult(1, next_handle=None)

    ours = {}
    for case in recorded["cases"]:
        workflow = json.loads(json.dumps(case["workflow"]).replace('"pick"', '"t"'))
        end = await _engine(pick, workflow).execute(initial_node_id="a", workflow_id="f")
        assert end.status == case["end"]["status"] == "completed"
        ours[case["name"]] = list(end.context)
    assert ours == {"nullToNullEdgeAndPlainEdge": ["a", "c"], "nullToPlainEdgeOnly": ["a", "c"]}


@pytest.mark.parametrize(
    "workflow",
    [
        {"nodes": [{"id": "\ud800", "type": "t"}]},
        {
            "nodes": [{"id": "a", "type": "t"}, {"id": "b", "type": "t"}],
            "edges": [{"source": "a", "target": "b", "sourceHandle": "y\udfff"}],
        },
    ],
    ids=["node-id", "source-handle"],
)
def test_a_workflow_naming_with_a_lone_surrogate_is_refused_when_built(
    workflow: dict[str, Any],
) -> None:
    """A node id keys the context in every snapshot written as UTF-8: one holding a lone
    surrogate could not be written, or would come back under another key."""
    with pytest.raises(ValidationError, match="lone UTF-16 surrogate"):
        WorkflowDefinition.model_validate(workflow)
