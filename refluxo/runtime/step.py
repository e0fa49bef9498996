"""``current_step()``: what a running executor knows about its own step."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from refluxo.runtime.ids import idempotency_key
from refluxo.steps import step_position


@dataclass(frozen=True, slots=True)
class StepInfo:
    """The step being executed by the durable runtime.

    ``now`` is the clock when the step started (epoch ms); ``attempt`` counts the attempts
    of this visit of the node (1, then 2 on the first retry...); ``visit`` identifies the
    visit (see :class:`refluxo.engine.StepPosition`).

    ``idempotency_key`` (32 hex digits: a hash of run, node and visit) is the same for every
    attempt and every
    redelivery of one visit of a node, and different for every other visit (a loop coming
    back to the node) and every other run. Pass it to the services a node calls (payment
    APIs, e-mail providers, ``INSERT ... ON CONFLICT DO NOTHING``): a charge whose reply was
    lost, retried by the node's retry policy or re-run after a crash, is then made once.
    """

    run_id: str
    workflow: str
    node_id: str
    version: int
    attempt: int
    visit: int
    now: int

    @property
    def idempotency_key(self) -> str:
        return idempotency_key(self.run_id, self.node_id, self.visit)


@dataclass(frozen=True, slots=True)
class RunInfo:
    """The run a delivery executes: set by the dispatcher for the delivery's duration."""

    run_id: str
    workflow: str


_run: ContextVar[RunInfo | None] = ContextVar("refluxo_current_run", default=None)


def current_step() -> StepInfo:
    """The step being executed; raises ``LookupError`` outside a runtime delivery."""
    run = _run.get()
    position = step_position()
    if run is None or position is None:
        raise LookupError("current_step() is only available inside a step run by the runtime")
    return StepInfo(
        run_id=run.run_id,
        workflow=run.workflow,
        node_id=position.node_id,
        version=position.version,
        attempt=position.attempt,
        visit=position.visit,
        now=position.now,
    )


@contextmanager
def running(run: RunInfo) -> Iterator[RunInfo]:
    """Make ``run`` the current run for the duration of the block."""
    token = _run.set(run)
    try:
        yield run
    finally:
        _run.reset(token)
