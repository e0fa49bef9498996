"""A run's input and a resume's payload given from Python must be JSON data: anything else
is refused up front with a request error naming where it is, and nothing is stored."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from refluxo import StepResult
from refluxo.host.embedded import EmbeddedRuntime
from refluxo.runtime import App
from refluxo.runtime.errors import BadRequest
from refluxo.runtime.json_values import MAX_VALUE_DEPTH
from tests.support.stores import history_of


def nested(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[EmbeddedRuntime]:
    app = App()

    @app.node()
    def ask(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        return StepResult(payload) if payload is not None else StepResult(pause=True)

    app.workflow("w", {"nodes": [{"id": "a", "type": "ask", "data": {}}], "edges": []})
    with EmbeddedRuntime(app, tmp_path / "runs.db", workers=0, synchronous="OFF") as started:
        yield started


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (float("nan"), "the input nan is not a JSON number"),
        ({"ratio": float("inf")}, "the input at ratio inf is not a JSON number"),
        ({"tags": {"a", "b"}}, "the input at tags is a set"),
        ([b"raw"], "the input at [0] is a bytes"),
        ({"when": object()}, "the input at when is a object"),
        ({1: "one"}, "the input has a key 1 that is not a string"),
        ({"name": "\ud800"}, "the input at name holds a lone surrogate"),
        ({"\udfff": 1}, "the input holds a lone surrogate"),
        (nested(5_000), f"nests more than {MAX_VALUE_DEPTH} arrays and objects deep"),
    ],
    ids=["nan", "inf", "set", "bytes", "object", "int-key", "surrogate", "surrogate-key", "deep"],
)
def test_a_start_with_what_json_cannot_hold_is_refused_and_nothing_is_stored(
    runtime: EmbeddedRuntime, value: Any, words: str
) -> None:
    with pytest.raises(BadRequest) as refused:
        runtime.service.start("w", value, run_id="r1")
    assert words in str(refused.value)
    assert runtime.service.list().runs == []


def test_json_data_up_to_the_depth_limit_starts_and_reads_back(runtime: EmbeddedRuntime) -> None:
    value = {"deep": nested(MAX_VALUE_DEPTH - 2), "text": "é ✓ 𝄞", "n": [1, 2.5, None, True]}
    run_id = runtime.service.start("w", value).record.run_id
    assert runtime.service.get(run_id).input == value


def test_a_resume_with_what_json_cannot_hold_is_refused_and_the_run_stays_paused(
    runtime: EmbeddedRuntime,
) -> None:
    run_id = runtime.service.start("w").record.run_id
    runtime.scheduler.drain()
    assert runtime.service.get(run_id).status == "paused"

    with pytest.raises(BadRequest, match="the payload at ok is a set"):
        runtime.service.resume(run_id, {"ok": {True}})

    assert runtime.service.get(run_id).status == "paused"
    runtime.service.resume(run_id, {"ok": True})
    runtime.scheduler.drain()
    record = runtime.service.get(run_id)
    assert record.status == "completed"
    assert history_of(runtime.store, run_id).all("a")[-1].output == {"ok": True}
