"""The durable runtime: the app registry, the dispatcher, run operations, and the ports
(store, definitions, scheduler) that backends implement.

Nothing here names a backend or a web framework: the composition root
(:mod:`refluxo.host.compose`) wires backends in, and the HTTP layer (:mod:`refluxo.api`)
calls :class:`RunService`.
"""

from __future__ import annotations

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
