"""The recorded ``@refluxo/core`` outcomes (tests/data/ts_core) and the executors they ran.

Each executor here is the Python twin of the TypeScript one the outcome was recorded with,
so a run in this engine can be compared with the recorded one field by field. The failing
executor raises an exception class named ``Error``: this engine writes ``TypeName: message``
and TypeScript ``String(error)``, so the texts then agree to the byte.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from refluxo import NodeDefinition, Snapshot, WorkflowEngine

DATA = Path(__file__).parent.parent / "data" / "ts_core"
CLOCK = 1700000000000
"""``Date.now()`` while the outcomes were recorded, and this engine's clock in the tests."""


def load(name: str) -> Any:
    """A recorded outcome file."""
    return json.loads((DATA / name).read_text())


class Error(Exception):
    """What the TypeScript executors throw (``new Error(...)``); named as JavaScript's
    ``Error`` so that error texts are identical."""


def echo(data: Any, context: Any, payload: Any, globals: Any) -> dict[str, Any]:
    return {"data": data}


def noop(data: Any, context: Any, payload: Any, globals: Any) -> dict[str, Any]:
    return {}


def pay(data: Any, context: Any, payload: Any, globals: Any) -> dict[str, Any]:
    if len(context.get("charge", [])) < data["failUntil"]:
        raise Error("card declined")
    return {"data": {"paid": data["amount"]}}


def approval(data: Any, context: Any, payload: Any, globals: Any) -> dict[str, Any]:
    if payload is None:
        return {"__pause": True}
    return {"data": payload, "nextHandle": "yes" if payload["approved"] else "no"}


def order_engine(workflow: Any, retry_policy: Any) -> WorkflowEngine:
    """The engine of ``snapshots.json``'s workflows, on the recording's clock."""
    return WorkflowEngine(
        workflow,
        {
            "echo": NodeDefinition(echo),
            "noop": NodeDefinition(noop),
            "pay": NodeDefinition(pay, retry_policy=retry_policy),
            "approval": NodeDefinition(approval),
        },
        clock=lambda: CLOCK,
    )


def wire(snapshot: Snapshot) -> dict[str, Any]:
    """``snapshot``'s wire form, checked to be the same through both encoders."""
    dumped: dict[str, Any] = json.loads(snapshot.model_dump_json())
    assert json.loads(snapshot.to_json()) == dumped
    assert snapshot.model_dump(mode="json") == dumped
    return dumped
