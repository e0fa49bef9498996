"""The exceptions refluxo raises.

Definition errors (a workflow that cannot run as written) raise; node failures do not: they
are recorded in the snapshot, where the error handler decides between a retry and a failure.
Every exception derives from :class:`RefluxoError`, so callers can catch the family at once.
"""

from __future__ import annotations

import asyncio
import threading


class RefluxoError(Exception):
    """Base class of every error raised by refluxo."""


class WorkflowDefinitionError(RefluxoError, ValueError):
    """The workflow or its node definitions are inconsistent (unknown node, type or edge)."""


class NodeValidationError(RefluxoError):
    """A node's input or output did not match its schema.

    Raised inside a step, it becomes a node error: retried or failed like any other.
    """


class ExpressionError(RefluxoError):
    """An expression could not be parsed or evaluated; the message names the expression."""


class LimitExceededError(RefluxoError, ValueError):
    """An input is larger or deeper than a documented limit allows."""


class TransientError(RefluxoError):
    """A backend failed for a reason that may pass: retry the whole delivery later.

    Every port (store, history reader, scheduler) raises it for retryable failures: SQLite
    busy, I/O error or disk full; Google ``Unavailable``, ``DeadlineExceeded``, contention
    past its retries. Nothing below the dispatcher turns it into a node error: the engine,
    the expression evaluator and plugin hooks let it through, the delivery is not
    acknowledged (HTTP 503 ``unavailable``), and the run's stored state is unchanged.
    """


class NodeExit(RuntimeError):
    """A node's code raised ``SystemExit``: the node fails, like on any other error, rather
    than the thread or the event loop that runs every run's steps ending with it."""

    def __init__(self, exited: SystemExit) -> None:
        super().__init__(f"the node's code raised SystemExit({exited.code!r})")


class NodeCancelled(RuntimeError):
    """A node's code raised ``asyncio.CancelledError`` while its step was not being
    cancelled (it awaited a task that something else cancelled): the node fails, like on
    any other error, instead of the step ending with no snapshot."""

    def __init__(self) -> None:
        super().__init__(
            "the node's code raised CancelledError (it awaited something that was cancelled) "
            "while its step was not being cancelled"
        )


class NodeAborted(RuntimeError):
    """A node's code raised a ``BaseException`` that is not an ``Exception`` (nor
    ``SystemExit``, ``KeyboardInterrupt`` or a cancellation of its step): the node fails,
    rather than the thread that runs steps ending with it. Only the type is told: its
    message may hold what the redaction of stored texts cannot see."""

    def __init__(self, raised: BaseException) -> None:
        super().__init__(f"the node's code raised {type(raised).__name__}, not an Exception")


def node_error_for(raised: BaseException) -> Exception:
    """The node error standing for a ``BaseException`` user code raised that is not an
    ``Exception`` (and does not end the step, see :func:`ends_the_step`)."""
    if isinstance(raised, SystemExit):
        return NodeExit(raised)
    if isinstance(raised, asyncio.CancelledError):
        return NodeCancelled()
    return NodeAborted(raised)


def ends_the_step(raised: BaseException) -> bool:
    """Whether ``raised``, caught around user code (an executor, a hook, an error handler),
    must go on up instead of failing the node or being ignored: a cancellation of the task
    running the step, or Ctrl-C (a ``KeyboardInterrupt`` in the main thread, the only one
    signals reach). Anything else user code raises (``SystemExit``, ``GeneratorExit``, a
    ``CancelledError`` of something it awaited, any ``BaseException``) must not end the
    thread or the event loop that runs every run's steps."""
    if isinstance(raised, asyncio.CancelledError):
        try:
            task = asyncio.current_task()
        except RuntimeError:  # driven in place: no task, nothing outside can cancel it
            return False
        return task is not None and task.cancelling() > 0
    if isinstance(raised, KeyboardInterrupt):
        return threading.current_thread() is threading.main_thread()
    return False


def where_failed(error: BaseException) -> str:
    """Where ``error`` was raised, for a log line: its type and its traceback's frames, but
    none of its message nor of the exceptions it chains.

    For failures of code that handles secrets (plugin hooks, error transforms): a message,
    or the node error an error hook was called for, may carry a secret; the frames (file,
    line, function, source line) do not carry runtime values.
    """
    import traceback

    frames = "".join(traceback.format_tb(error.__traceback__))
    return f"{type(error).__name__} (message withheld)\n{frames}".rstrip()
