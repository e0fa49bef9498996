"""Redaction masks user content and never the engine's structure.

Globals are secrets whatever they hold, so a global may equal a node id (``"notify"``), a
status, a field name of the stored wire format (``"error"``, ``"output"``) or a metadata
key the engine owns. Runs must still follow their graph, retry, wait for their timers and
keep every failed attempt's error text; only user content (outputs, error texts, failure
reasons) is masked. And secrets are found wherever the globals keep them: in dataclasses,
pydantic models, plain objects and bytes, whatever else the globals hold.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, SecretStr

from refluxo import RedactionPlugin, StepResult
from refluxo.backends.memory import MemoryRuntime
from refluxo.host.embedded import EmbeddedRuntime
from refluxo.redaction import _encodings
from refluxo.runtime import App, RunService, current_step
from tests.support.clock import FakeClock

WIRE_WORDS = [
    # Field names of the stored head and results, statuses, metadata keys the engine owns.
    *("workflowId", "status", "currentNodeId", "context", "version", "lastStartedAt"),
    *("totalExecutionTime", "metadata", "retryState", "nodeId", "attempts", "nextRetryAt"),
    *("output", "timestamp", "error", "attempt", "failedReason", "pausedReason"),
    *("resumeAt", "cancelledAt", "active", "paused", "completed", "failed"),
    # The node ids and the edge handle of the workflow below.
    *("start", "notify", "after", "done"),
]


def structure_app(clock: FakeClock) -> App:
    app = App(
        clock=clock,
        globals=lambda: {"channel": "notify", "log_level": "ERROR", "words": list(WIRE_WORDS)},
        plugins=[RedactionPlugin(mask_globals=True)],
    )

    @app.node(retry_policy={"maxAttempts": 2, "interval": 10})
    def send(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        if current_step().attempt <= 2:
            raise ConnectionError(f"ERROR: {globals['channel']} unreachable, try later")
        return StepResult({"level": "Error", "sent": True}, next_handle="notify")

    @app.node()
    def wait(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        if payload is None:
            return StepResult(pause=True, resume_at=clock.now + 100)
        return StepResult({"woke": True})

    @app.node()
    def give_up(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        raise PermissionError("ERROR: denied, no retry")

    nodes = [
        {"id": "start", "type": "trigger"},
        {"id": "notify", "type": "send"},
        {"id": "after", "type": "wait"},
        {"id": "done", "type": "wait"},
    ]
    app.workflow(
        "ops",
        {
            "nodes": nodes,
            "edges": [
                {"source": "start", "target": "notify"},
                {"source": "notify", "target": "after", "sourceHandle": "notify"},
                {"source": "after", "target": "done"},
            ],
        },
    )
    app.workflow(
        "fails",
        {
            "nodes": [{"id": "start", "type": "trigger"}, {"id": "notify", "type": "give_up"}],
            "edges": [{"source": "start", "target": "notify"}],
        },
    )
    return app


Runtime = tuple[RunService, Callable[[], int]]


@pytest.fixture(params=["memory", "sqlite"])
def runtime_for(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[[App], Runtime]]:
    stops: list[Callable[[], None]] = []

    def build(app: App) -> Runtime:
        if request.param == "memory":
            memory = MemoryRuntime(app)
            stops.append(memory.stop)
            return memory.service, memory.drain
        embedded = EmbeddedRuntime(app, tmp_path / "r.db", workers=0, synchronous="NORMAL")
        stops.append(embedded.stop)
        return embedded.service, embedded.scheduler.drain

    yield build
    for stop in stops:
        stop()


def settle(service: RunService, drain: Callable[[], int], clock: FakeClock, run_id: str) -> None:
    for _ in range(50):
        drain()
        if service.get(run_id).status.is_terminal:
            return
        clock.advance(50)
    raise AssertionError(f"run {run_id} did not settle: {service.get(run_id).status}")


def test_secrets_equal_to_node_ids_and_wire_words_corrupt_no_run(
    runtime_for: Callable[[App], Runtime], clock: FakeClock
) -> None:
    service, drain = runtime_for(structure_app(clock))
    service.start("ops", {"note": "ERROR and notify"}, run_id="ops")
    settle(service, drain, clock, "ops")

    record = service.get("ops")
    assert record.status == "completed", record.snapshot.metadata
    results = [(entry.node_id, entry.result) for entry in service.timeline("ops", limit=100)]
    assert [node for node, _ in results] == ["start", "notify", "notify", "notify", "after", "done"]
    attempts = [result for node, result in results if node == "notify"]
    assert [result.attempt for result in attempts] == [1, 2, 3]
    # Every failed attempt keeps its error text, the secrets in it masked as written.
    assert [result.error for result in attempts[:2]] == [
        "ConnectionError: [REDACTED]: [REDACTED] unreachable, try later"
    ] * 2
    # "ERROR" and "error" are short: masked as written, never in another case.
    assert attempts[2].output == {"level": "Error", "sent": True}
    assert results[0][1].output == {"note": "[REDACTED] and [REDACTED]"}


def test_a_failure_keeps_its_reason_and_its_node(
    runtime_for: Callable[[App], Runtime], clock: FakeClock
) -> None:
    service, drain = runtime_for(structure_app(clock))
    service.start("fails", None, run_id="fails")
    settle(service, drain, clock, "fails")

    record = service.get("fails")
    assert record.status == "failed"
    assert record.snapshot.current_node_id == "notify"
    reason = record.snapshot.metadata["failedReason"]
    assert reason.endswith("PermissionError: [REDACTED]: denied, no retry")
    errors = [entry.result.error for entry in service.timeline("fails", limit=10)]
    assert errors == [None, "PermissionError: [REDACTED]: denied, no retry"]


def test_overlapping_secrets_are_masked_over_their_whole_span(
    runtime_for: Callable[[App], Runtime], clock: FakeClock
) -> None:
    app = App(
        clock=clock,
        globals={"left": "1234abcd", "right": "abcd5678"},
        plugins=[RedactionPlugin()],
    )

    @app.node()
    def joined(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        both = globals["left"][:4] + globals["right"]
        if data.get("fail"):
            raise ValueError(f"x{both}y")
        return StepResult({"v": f"x{both}y"})

    app.workflow("w", {"nodes": [{"id": "a", "type": "joined"}]})
    app.workflow("f", {"nodes": [{"id": "a", "type": "joined", "data": {"fail": True}}]})
    service, drain = runtime_for(app)
    service.start("w", None, run_id="w")
    service.start("f", None, run_id="f")
    settle(service, drain, clock, "w")
    settle(service, drain, clock, "f")
    assert [entry.result.output for entry in service.timeline("w")] == [{"v": "x[REDACTED]y"}]
    assert [entry.result.error for entry in service.timeline("f")] == ["ValueError: x[REDACTED]y"]


# -- secrets kept inside objects and bytes -------------------------------------------------


@dataclasses.dataclass
class Cfg:
    api_key: str


@dataclasses.dataclass(slots=True)
class Slotted:
    token: str


class Settings(BaseModel):
    password: SecretStr
    nested: Cfg


class Client:
    def __init__(self, secret: str) -> None:
        self._auth = ("robot", secret)


class Hostile(Mapping[str, Any]):
    """Looking into it raises everywhere: secrets elsewhere must still be collected."""

    def __getitem__(self, key: str) -> Any:
        raise RuntimeError("no")

    def __iter__(self) -> Iterator[str]:
        raise RuntimeError("no")

    def __len__(self) -> int:
        raise RuntimeError("no")

    def __getattribute__(self, name: str) -> Any:
        if name == "__dict__":
            raise RuntimeError("no")
        return object.__getattribute__(self, name)


OBJECT_SECRETS = {
    "dataclass": "dc-api-key-0a1b2c3d",
    "slotted": "slotted-token-4e5f6a",
    "secret_str": "pydantic-pass-7b8c9d",
    "nested": "nested-cfg-key-0e1f2a",
    "object": "client-secret-3b4c5d",
    "bytes": "bytes-secret-6e7f8a",
    "deep": "set-in-list-secret-9b",
}
BINARY_SECRET = b"\xff\xfe-binary-secret-\x00\x01"


def object_globals() -> dict[str, Any]:
    cycle: list[Any] = []
    cycle.append(cycle)
    return {
        "cfg": Cfg(OBJECT_SECRETS["dataclass"]),
        "slotted": Slotted(OBJECT_SECRETS["slotted"]),
        "settings": Settings(
            password=SecretStr(OBJECT_SECRETS["secret_str"]),
            nested=Cfg(OBJECT_SECRETS["nested"]),
        ),
        "client": Client(OBJECT_SECRETS["object"]),
        "raw": OBJECT_SECRETS["bytes"].encode(),
        "binary": BINARY_SECRET,
        "many": [{"deep": {"set": frozenset({OBJECT_SECRETS["deep"]})}}],
        "hostile": Hostile(),
        "cycle": cycle,
    }


def test_secrets_inside_objects_and_bytes_in_globals_are_masked(
    tmp_path: Path, clock: FakeClock
) -> None:
    app = App(clock=clock, globals=object_globals, plugins=[RedactionPlugin()])

    @app.node()
    def leak(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        return StepResult(
            {
                "dataclass": globals["cfg"].api_key,
                "slotted": globals["slotted"].token,
                "secret_str": globals["settings"].password.get_secret_value(),
                "nested": f"key={globals['settings'].nested.api_key}",
                "object": {globals["client"]._auth[1]: 1},
                "bytes": globals["raw"],  # UTF-8: held as text (not UTF-8 has no JSON form)
                "deep": sorted(globals["many"][0]["deep"]["set"]),
            }
        )

    @app.node()
    def fail(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        raise RuntimeError(f"{globals['cfg']!r} {globals['raw']!r} {globals['binary']!r}")

    app.workflow(
        "w",
        {
            "nodes": [{"id": "a", "type": "leak"}, {"id": "b", "type": "fail"}],
            "edges": [{"source": "a", "target": "b"}],
        },
    )
    runtime = EmbeddedRuntime(app, tmp_path / "o.db", workers=0, synchronous="NORMAL")
    try:
        runtime.service.start("w", None, run_id="w")
        runtime.scheduler.drain()
        record = runtime.service.get("w")
        assert record.status == "failed"  # the hostile global did not break anything
        output = runtime.service.timeline("w")[0].result.output
        assert output["dataclass"] == "[REDACTED]"
        assert output["object"] == {"[REDACTED]": 1}
        assert output["nested"] == "key=[REDACTED]"
        reason = record.snapshot.metadata["failedReason"]
        assert "Cfg(api_key='[REDACTED]')" in reason
        assert "b'[REDACTED]'" in reason
    finally:
        runtime.stop()
    secrets: list[str | bytes] = [*OBJECT_SECRETS.values(), BINARY_SECRET]
    forms = {form for secret in secrets for form in _encodings(secret) if len(form) >= 8}
    files = sorted(tmp_path.glob("o.db*"))
    assert files
    for file in files:
        blob = file.read_bytes()
        for form in forms:
            assert form.encode("utf-8", "surrogatepass") not in blob, (file.name, form)
        for secret in OBJECT_SECRETS.values():
            assert json.dumps(secret)[1:-1].encode() not in blob
