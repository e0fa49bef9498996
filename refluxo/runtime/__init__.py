"""The durable runtime: dispatcher, store and scheduler protocols, the app registry."""

from __future__ import annotations

from refluxo.runtime.app import App, WorkflowSpec
from refluxo.runtime.dispatcher import Dispatcher, Outcome, StepBudget
from refluxo.runtime.ports import (
    Delivery,
    HistoryReader,
    RunRecord,
    Scheduler,
    SnapshotStore,
    StepCommit,
)
from refluxo.runtime.service import RunService
from refluxo.runtime.step import StepInfo, current_step

__all__ = [
    "App",
    "Delivery",
    "Dispatcher",
    "HistoryReader",
    "Outcome",
    "RunRecord",
    "RunService",
    "Scheduler",
    "SnapshotStore",
    "StepBudget",
    "StepCommit",
    "StepInfo",
    "WorkflowSpec",
    "current_step",
]
