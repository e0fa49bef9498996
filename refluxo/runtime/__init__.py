"""The durable runtime: the app registry, the dispatcher, run operations, and the ports
(store, definitions, scheduler) that backends implement.

Nothing here names a backend or a web framework: the composition root
(:mod:`refluxo.host.compose`) wires backends in, and the HTTP layer (:mod:`refluxo.api`)
calls :class:`RunService`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from refluxo._lazy import lazy_exports

if TYPE_CHECKING:
    from refluxo.runtime.app import App, WorkflowSpec
    from refluxo.runtime.dispatcher import DeliveryResult, Dispatcher, Outcome, StepBudget
    from refluxo.runtime.limits import RuntimeLimits
    from refluxo.runtime.ports import (
        AppendedResult,
        CommitResult,
        CommitToken,
        DefinitionStore,
        Delivery,
        HistoryReader,
        Payload,
        RunPage,
        RunRecord,
        RunStore,
        Scheduler,
        SnapshotStore,
        StepCommit,
        TimelineEntry,
    )
    from refluxo.runtime.service import RunService, Started
    from refluxo.runtime.step import StepInfo, current_step

_EXPORTS: dict[str, str] = {
    "App": "refluxo.runtime.app",
    "AppendedResult": "refluxo.runtime.ports",
    "CommitResult": "refluxo.runtime.ports",
    "CommitToken": "refluxo.runtime.ports",
    "DefinitionStore": "refluxo.runtime.ports",
    "Delivery": "refluxo.runtime.ports",
    "DeliveryResult": "refluxo.runtime.dispatcher",
    "Dispatcher": "refluxo.runtime.dispatcher",
    "HistoryReader": "refluxo.runtime.ports",
    "Outcome": "refluxo.runtime.dispatcher",
    "Payload": "refluxo.runtime.ports",
    "RunPage": "refluxo.runtime.ports",
    "RunRecord": "refluxo.runtime.ports",
    "RunService": "refluxo.runtime.service",
    "RunStore": "refluxo.runtime.ports",
    "RuntimeLimits": "refluxo.runtime.limits",
    "Scheduler": "refluxo.runtime.ports",
    "SnapshotStore": "refluxo.runtime.ports",
    "Started": "refluxo.runtime.service",
    "StepBudget": "refluxo.runtime.dispatcher",
    "StepCommit": "refluxo.runtime.ports",
    "StepInfo": "refluxo.runtime.step",
    "TimelineEntry": "refluxo.runtime.ports",
    "WorkflowSpec": "refluxo.runtime.app",
    "current_step": "refluxo.runtime.step",
}
"""Each exported name to the module defining it, imported on first use (PEP 562): a
process that needs one part of the runtime (the ``refluxo`` command) loads only that part."""

__all__ = [
    "App",
    "AppendedResult",
    "CommitResult",
    "CommitToken",
    "DefinitionStore",
    "Delivery",
    "DeliveryResult",
    "Dispatcher",
    "HistoryReader",
    "Outcome",
    "Payload",
    "RunPage",
    "RunRecord",
    "RunService",
    "RunStore",
    "RuntimeLimits",
    "Scheduler",
    "SnapshotStore",
    "Started",
    "StepBudget",
    "StepCommit",
    "StepInfo",
    "TimelineEntry",
    "WorkflowSpec",
    "current_step",
]


__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
