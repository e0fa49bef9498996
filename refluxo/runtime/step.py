"""``current_step()``: what a running executor knows about its own step."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from refluxo.runtime.naming import idempotency_key


@dataclass(frozen=True, slots=True)
class StepInfo:
    """The step being executed by the durable runtime.

    ``now`` is the dispatcher's clock when the step started (epoch ms).
    ``idempotency_key`` is the same every time this step is delivered again (after a crash
    or a duplicate delivery) and different for every other step, including a retry of the
    same node, which runs at a new version. Pass it to the services a node calls (payment
    APIs, e-mail providers, ``INSERT ... ON CONFLICT DO NOTHING``) to make a side effect
    happen once even though the node itself may run more than once.
    """

    run_id: str
    workflow: str
    node_id: str
    version: int
    attempt: int
    now: int

    @property
    def idempotency_key(self) -> str:
        return idempotency_key(self.run_id, self.node_id, self.version)


_current: ContextVar[StepInfo | None] = ContextVar("refluxo_current_step", default=None)


def current_step() -> StepInfo:
    """The step being executed; raises ``LookupError`` outside a runtime delivery."""
    info = _current.get()
    if info is None:
        raise LookupError("current_step() is only available inside a step run by the runtime")
    return info


@contextmanager
def running_step(info: StepInfo) -> Iterator[StepInfo]:
    """Make ``info`` the current step for the duration of the block."""
    token = _current.set(info)
    try:
        yield info
    finally:
        _current.reset(token)
