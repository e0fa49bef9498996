"""The app the end-to-end tests deploy with main.py (REFLUXO_APP=tests.support.e2e_app:app)."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from refluxo import StepResult
from refluxo.examples.app import app as examples
from refluxo.runtime import App, current_step

app = App()

RETRY_INTERVAL_MS = 1000


@app.node()
def emit(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
    return StepResult({"node": current_step().node_id, "version": current_step().version})


@app.node(retry_policy={"maxAttempts": 3, "interval": RETRY_INTERVAL_MS, "backoff": "fixed"})
def flaky(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
    if current_step().attempt <= data["fail"]:
        raise ConnectionError(f"attempt {current_step().attempt} failed")
    return StepResult({"attempt": current_step().attempt})


@app.node()
async def compute(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
    """Awaits real I/O: a child process through asyncio, then a gather of two sleeps."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "print(21 * 2)", stdout=asyncio.subprocess.PIPE
    )
    out, _ = await process.communicate()
    slept = await asyncio.gather(asyncio.sleep(0.01, "a"), asyncio.sleep(0.01, "b"))
    return StepResult({"answer": int(out), "slept": slept})


@app.node()
def approval(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
    if payload is None:
        return StepResult(pause=True)
    return StepResult(payload, next_handle="yes" if payload["ok"] else "no")


def _graph(nodes: list[dict[str, Any]], edges: list[tuple[str, str, str | None]]) -> Any:
    return {
        "start": "start",
        "nodes": [{"id": "start", "type": "trigger"}, *nodes],
        "edges": [
            {"source": s, "target": t, **({} if h is None else {"sourceHandle": h})}
            for s, t, h in edges
        ],
    }


app.workflow(
    "chain",
    _graph(
        [{"id": "a", "type": "emit"}, {"id": "b", "type": "emit"}, {"id": "c", "type": "emit"}],
        [("start", "a", None), ("a", "b", None), ("b", "c", None)],
    ),
)
app.workflow(
    "flaky",
    _graph(
        [{"id": "f", "type": "flaky", "data": {"fail": 1}}, {"id": "done", "type": "emit"}],
        [("start", "f", None), ("f", "done", None)],
    ),
)
app.workflow(
    "approval",
    _graph(
        [
            {"id": "ask", "type": "approval"},
            {"id": "yes", "type": "emit"},
            {"id": "no", "type": "emit"},
        ],
        [("start", "ask", None), ("ask", "yes", "yes"), ("ask", "no", "no")],
    ),
)
app.workflow(
    "awaiting",
    _graph([{"id": "compute", "type": "compute"}], [("start", "compute", None)]),
)

# The package's example of parallel work, deployed as it ships: enrich records in child
# runs (a map), then aggregate.
for _type in ("make_records", "score_record", "aggregate"):
    app.add_node_type(_type, examples.node_types[_type])
for _name in ("enrich-record", "enrich-records"):
    app.workflow(_name, examples.get_workflow(_name).wire)
