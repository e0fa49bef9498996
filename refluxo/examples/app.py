"""The example app: node types for the example workflows, and the workflows themselves.

It ships in the package (the JSON workflows as package data), so it is the command's
default app wherever refluxo is installed: ``refluxo run content-approval --input
'{"title": "Hello"}'``, ``refluxo serve``, ``refluxo demo``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from refluxo import RetryPolicy, StepResult
from refluxo.runtime import App, current_step

HERE = Path(__file__).parent

app = App()

# Simulated upstream APIs: the example stays deterministic and offline.
FAKE_API: dict[str, dict[str, Any]] = {
    "users": {"u1": {"id": "u1", "name": "Ada", "city": "Lisbon"}},
    "orders": {
        "u1": {
            "total": 120.0,
            "items": [{"sku": "pen", "price": 20.0}, {"sku": "lamp", "price": 100.0}],
        }
    },
    "weather": {"Lisbon": {"celsius": 21}},
}


@app.node()
def compose(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
    """Create a draft from the run's input."""
    return StepResult({"title": data.get("title") or "Untitled", "body": "..."})


@app.node(handles=["approved", "rejected"])
def approval(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
    """Wait for a human: resume with {"approved": true|false, "by": ..., "comment": ...}."""
    if payload is None:
        return StepResult({"question": data["question"]}, pause=True)
    return StepResult(payload, next_handle="approved" if payload.get("approved") else "rejected")


@app.node()
def notify(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
    return StepResult({"sent": data["message"]})


@app.node()
def fetch(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
    """Read a resource from the (simulated) API."""
    found = FAKE_API.get(data["resource"], {}).get(data["id"])
    if found is None:
        raise LookupError(f"{data['resource']}/{data['id']} not found")
    return StepResult(found)


@app.node()
def collect(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
    return StepResult(data)


@app.node(handles=["loop", "done"])
def iterate(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
    """Emit items one at a time on handle "loop", then "done"; the index is its history."""
    index = len(context.get("each", []))
    items = data.get("items") or []
    if index < len(items):
        return StepResult({"currentItem": items[index], "currentIndex": index}, next_handle="loop")
    return StepResult({"totalItems": len(items)}, next_handle="done")


@app.node()
def square(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
    return StepResult(data["value"] * data["value"])


@app.node()
def sum_outputs(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
    return StepResult(sum(result.output for result in context.get(data["node"], [])))


@app.node(retry_policy=RetryPolicy(max_attempts=5, interval=1000, backoff="exponential"))
def flaky_charge(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
    """Fails until its attempt reaches data["failUntilAttempt"] (a gateway having a bad day).

    The charge carries the step's idempotency key, as a real payment API call would.
    """
    step = current_step()
    if step.attempt <= (data.get("failUntilAttempt") or 0):
        raise ConnectionError(f"payment gateway timeout (attempt {step.attempt})")
    return StepResult(
        {"amount": data["amount"], "attempt": step.attempt, "idempotencyKey": step.idempotency_key}
    )


@app.node()
def make_records(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
    """The records to enrich: ``count`` customer records (a real app reads a table)."""
    count = data.get("count") or 10
    if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= 10_000:
        raise ValueError(f"count must be a whole number from 0 to 10000, got {count!r}")
    return StepResult([{"id": f"c{i:05d}", "spend": (i * 37) % 500} for i in range(count)])


@app.node()
def score_record(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
    """Enrich one record (a real app calls a scoring API here, one child run per record)."""
    record = data["record"]
    spend = record["spend"]
    tier = "gold" if spend >= 400 else "silver" if spend >= 200 else "bronze"
    return StepResult({"id": record["id"], "tier": tier, "score": spend // 10})


@app.node()
def aggregate(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
    """Count the enriched records by tier; list the ones whose enrichment failed."""
    tiers: dict[str, int] = {}
    failed = []
    for entry in data["enriched"]:
        if "error" in entry:
            failed.append(entry["runId"])
        else:
            tiers[entry["tier"]] = tiers.get(entry["tier"], 0) + 1
    return StepResult({"records": len(data["enriched"]), "byTier": tiers, "failed": failed})


for name in (
    "content_approval",
    "api_aggregation",
    "loop",
    "flaky_retry",
    "timed_wait",
    "enrich_record",
    "enrich_records",
):
    app.workflow(name.replace("_", "-"), HERE / f"{name}.json")
