"""The in-memory reference backend: the executable statement of the ports' contracts.

:class:`MemoryStore` and :class:`MemoryScheduler` implement
:class:`~refluxo.runtime.ports.SnapshotStore` and :class:`~refluxo.runtime.ports.Scheduler`
as plainly as the contracts allow, with nothing durable and nothing to install: each rule
of a port is one visible line here, and the contract suites run every other backend
through the same tests.

:class:`MemoryRuntime` wires them to the dispatcher and delivers in-process: the
``memory`` backend of the composition root. Runs vanish with the process.
"""

from __future__ import annotations

from refluxo.backends.memory.runtime import MemoryRuntime
from refluxo.backends.memory.scheduler import MemoryScheduler
from refluxo.backends.memory.store import HeadStamp, MemoryHistory, MemoryStore

__all__ = ["HeadStamp", "MemoryHistory", "MemoryRuntime", "MemoryScheduler", "MemoryStore"]
