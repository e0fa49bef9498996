"""The in-memory reference backend: the executable statement of the ports' contracts.

:class:`MemoryStore` and :class:`MemoryScheduler` implement
:class:`~refluxo.runtime.ports.SnapshotStore` and :class:`~refluxo.runtime.ports.Scheduler`
as plainly as the contracts allow, with nothing durable and nothing to install. They are
what a new backend is compared with: the contract suites run every backend through the
same tests, and this one passes them by construction rather than by cleverness.

Use them to embed refluxo in tests and short-lived processes: runs vanish with the process.
"""

from __future__ import annotations

from refluxo.backends.memory.scheduler import MemoryScheduler
from refluxo.backends.memory.store import HeadStamp, MemoryHistory, MemoryStore

__all__ = ["HeadStamp", "MemoryHistory", "MemoryScheduler", "MemoryStore"]
