"""A small order workflow that shows every engine feature, step by step.

Used by ``refluxo demo``: expressions, validation, a flaky node retried with backoff, a
human approval (pause and resume with a payload) and a branch on the answer.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from refluxo.engine import WorkflowEngine
from refluxo.expressions import JexlTransformEngine
from refluxo.model import Snapshot, SnapshotStatus, StepResult
from refluxo.validation import SchemaValidator

ORDER_WORKFLOW: dict[str, Any] = {
    "nodes": [
        {"id": "receive", "type": "receive_order",
         "data": {"customer": "ada@example.com", "items": [{"sku": "book", "qty": 2, "price": 12.5}]}},
        {"id": "price", "type": "compute_total",
         "data": {"items": "{{ nodes.receive.output.items }}"}},
        {"id": "charge", "type": "charge_card",
         "data": {"amount": "{{ nodes.price.output.total }}", "token": "{{ globals.payment_token }}"}},
        {"id": "approve", "type": "manager_approval",
         "data": {"question": "Ship order of {{ nodes.price.output.total }} EUR?"}},
        {"id": "ship", "type": "notify",
         "data": {"message": "Shipped to {{ nodes.receive.output.customer }}"}},
        {"id": "refund", "type": "notify",
         "data": {"message": "Refunded {{ nodes.price.output.total }} EUR"}},
    ],
    "edges": [
        {"source": "receive", "target": "price"},
        {"source": "price", "target": "charge"},
        {"source": "charge", "target": "approve"},
        {"source": "approve", "target": "ship", "sourceHandle": "approved"},
        {"source": "approve", "target": "refund", "sourceHandle": "rejected"},
    ],
}


class ChargeInput(BaseModel):
    amount: float
    token: str


def build_engine(failures: int = 1) -> WorkflowEngine:
    """The order engine; ``charge_card`` fails ``failures`` times before succeeding."""
    attempts = {"charge": 0}

    def receive_order(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        return StepResult(data)

    def compute_total(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        total = sum(item["qty"] * item["price"] for item in data["items"])
        return StepResult({"total": total})

    def charge_card(data: ChargeInput, context: Any, payload: Any, globals: Any) -> StepResult:
        attempts["charge"] += 1
        if attempts["charge"] <= failures:
            raise ConnectionError("payment gateway timed out")
        return StepResult({"charged": data.amount, "receipt": f"r-{random.randrange(10**6):06d}"})

    def manager_approval(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        if payload is None:
            return StepResult({"asked": data["question"]}, pause=True)
        return StepResult(payload, next_handle="approved" if payload["approved"] else "rejected")

    def notify(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        return StepResult({"sent": data["message"]})

    return WorkflowEngine(
        ORDER_WORKFLOW,
        {
            "receive_order": {"executor": receive_order},
            "compute_total": {"executor": compute_total},
            "charge_card": {
                "executor": charge_card,
                "metadata": {"input": ChargeInput},
                "retryPolicy": {"maxAttempts": 3, "interval": 50, "backoff": "exponential"},
            },
            "manager_approval": {"executor": manager_approval},
            "notify": {"executor": notify},
        },
        transform_engines=[JexlTransformEngine()],
        validator=SchemaValidator(),
    )


async def run_demo(show: Callable[..., None]) -> Snapshot:
    """Drive the order workflow one step at a time, printing each transition."""
    engine = build_engine()
    engine.validate_workflow()
    secrets = {"payment_token": "tok_demo_secret"}
    snapshot = engine.create_initial_snapshot("order-1", "receive")
    show("Order workflow: receive -> price -> charge (flaky) -> approve (human) -> ship | refund",
         bold=True)
    payload: Any = None
    while not snapshot.status.is_terminal:
        node = snapshot.current_node_id
        if snapshot.status == SnapshotStatus.PAUSED:
            payload = {"approved": True, "by": "manager@example.com"}
            show(f"  ... paused at {node!r}; resuming with {payload}", fg="yellow")
        elif snapshot.status == SnapshotStatus.ERROR:
            assert snapshot.retry_state is not None
            show(f"  ... retry {snapshot.retry_state.attempts} of {node!r} scheduled", fg="yellow")
        snapshot = await engine.execute_step(
            snapshot.model_copy(update={"status": SnapshotStatus.ACTIVE}), payload, secrets
        )
        payload = None
        results = snapshot.context.get(node or "", [])
        last = results[-1] if results else None
        detail = f"error: {last.error}" if last and last.error else (
            f"output: {last.output}" if last and snapshot.status != "paused" else "")
        show(f"v{snapshot.version:<2} {node:<8} -> {snapshot.status.value:<9} {detail}",
             fg="red" if snapshot.status in ("error", "failed") else "green")
    assert "tok_demo_secret" not in snapshot.model_dump_json(), "a secret reached the snapshot"
    return snapshot
