"""The snapshot metadata keys refluxo writes, and the standard reasons: one place each.

``metadata`` is free-form and travels with the snapshot (it is part of the wire form shared
with ``@refluxo/core``), so these names are a contract: clients read them.
"""

from __future__ import annotations

FAILED_REASON = "failedReason"
"""Why a failed run failed: every failed run has one."""

PAUSED_REASON = "pausedReason"
"""Why a run waits for a retry (``"Retry attempt N"``); removed once it no longer waits."""

RESUME_AT = "resumeAt"
"""When a timed pause ends (epoch ms); removed once the node has run again."""

PAUSED_WITH = "pausedWith"
"""What a node paused with (the data of ``StepResult(data, pause=True)``, e.g. the question
a human answers), as the redaction plugin left it; removed once the node has run again."""

CANCELLED_AT = "cancelledAt"
"""When a run was cancelled (epoch ms)."""

STEP_LIMIT_REASON = "Step limit exceeded"
CANCELLED_REASON = "Cancelled"

CHILD_RUNS = "childRuns"
"""The child runs a ``map``, ``parallel`` or ``call`` node started: while the run waits for
them, what they are (``waiting: true``, their workflows and inputs); once they are joined,
a summary (how many ended and failed). Written by the runtime only."""

PARENT_RUN = "parentRun"
"""In a child run: the run that started it (``runId``), the version at which that run
waits (``version``), its node (``node``) and the child's place among its siblings
(``index``)."""
