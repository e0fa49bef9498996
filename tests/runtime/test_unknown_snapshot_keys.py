"""A snapshot's unknown keys (what another writer of the wire form added, as
``@refluxo/core`` keeps them through ``{...snapshot}``) survive the durable runtime's steps:
its stored head keeps them from one step to the next."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from refluxo import Snapshot, StepResult
from refluxo.host.embedded import EmbeddedRuntime
from refluxo.runtime import App
from refluxo.runtime.ports import Delivery, StepCommit


def test_unknown_head_keys_are_kept_through_later_steps(tmp_path: Path) -> None:
    app = App()

    @app.node()
    def step(data: Any, context: Any, payload: Any, globals: Any) -> StepResult:
        return StepResult(data)

    app.workflow(
        "w",
        {
            "nodes": [{"id": n, "type": "step", "data": {"n": n}} for n in "abc"],
            "edges": [{"source": "a", "target": "b"}, {"source": "b", "target": "c"}],
        },
    )
    with EmbeddedRuntime(app, tmp_path / "runs.db", workers=0, synchronous="OFF") as runtime:
        record = runtime.service.start("w").record
        tagged = Snapshot.model_validate(
            {**record.snapshot.model_dump(mode="json"), "tenant": "acme", "trace": [1, 2]}
        )
        head = tagged.model_copy(update={"version": record.version + 1})
        next_step = Delivery(record.run_id, head.version, 0)
        committed = runtime.store.commit(
            StepCommit(record.run_id, record.version, head, next_delivery=next_step)
        )
        assert committed.committed
        runtime.scheduler.drain()
        final = runtime.service.get(record.run_id)

    assert final.status == "completed"
    assert final.snapshot.model_extra == {"tenant": "acme", "trace": [1, 2]}
