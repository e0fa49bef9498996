"""Plugins: lifecycle hooks around nodes and runs.

A hook that raises is logged and ignored: a plugin can observe a run, never break it.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from refluxo._aio import resolve
from refluxo.errors import TransientError, ends_the_step, where_failed

if TYPE_CHECKING:
    from refluxo.definitions import NodeDefinition
    from refluxo.model import Node, Snapshot

logger = logging.getLogger("refluxo.plugins")


@dataclass(frozen=True, slots=True)
class PluginContext:
    """What a node hook sees. ``output`` is set only after a successful execution."""

    node: Node
    definition: NodeDefinition
    snapshot: Snapshot
    globals: Any
    external_payload: Any
    input: Any
    output: Any = None


@dataclass(frozen=True, slots=True)
class ErrorPluginContext(PluginContext):
    """What :meth:`Plugin.on_node_error` sees: the context plus the error and attempt."""

    error: BaseException | None = None
    attempt: int = 1


class Plugin:
    """Subclass and override any hook; each may be ``def`` or ``async def``."""

    name: str = "plugin"

    def on_before_node_execution(self, ctx: PluginContext) -> Any:
        """Before transforms, validation and the executor."""

    def on_after_node_execution(self, ctx: PluginContext) -> Any:
        """After a successful execution or a pause (``ctx.output`` is ``None`` on a pause)."""

    def on_node_error(self, ctx: ErrorPluginContext) -> Any:
        """After a node raised, before the error handler decides on a retry."""

    def on_workflow_start(self, snapshot: Snapshot) -> Any:
        """When ``execute`` starts a new run."""

    def on_workflow_complete(self, snapshot: Snapshot) -> Any:
        """When ``execute`` ends with a completed run."""

    def on_workflow_pause(self, snapshot: Snapshot) -> Any:
        """When ``execute`` ends with a paused run."""

    def transform_output(self, ctx: PluginContext) -> Any:
        """Return the output to record instead of ``ctx.output`` (a refluxo extension).

        Runs after the executor and output validation, before the result enters the
        context (and so before any store sees it): the place to redact. Unlike the
        observing hooks, a failure here is a node error: an output that could not be
        redacted is never recorded.
        """
        return ctx.output

    def transform_error(self, ctx: ErrorPluginContext, text: str) -> Any:
        """Return the error text to record instead of ``text`` (a refluxo extension).

        A failure here records a generic message instead of ``text``.
        """
        return text


HOOK_NAMES = (
    "transform_output",
    "transform_error",
    "on_before_node_execution",
    "on_after_node_execution",
    "on_node_error",
    "on_workflow_start",
    "on_workflow_complete",
    "on_workflow_pause",
)


class PluginHooks:
    """Dispatches hooks to the plugins that override them, isolating their failures.

    Only overridden hooks are called, so plugins cost nothing on the steps they ignore.
    """

    def __init__(self, plugins: Sequence[Plugin]) -> None:
        self._hooks: dict[str, list[tuple[str, Any]]] = {name: [] for name in HOOK_NAMES}
        for plugin in plugins:
            for hook_name in HOOK_NAMES:
                hook = getattr(plugin, hook_name, None)
                default = getattr(Plugin, hook_name)
                if hook is None or getattr(hook, "__func__", None) is default:
                    continue
                label = str(getattr(plugin, "name", type(plugin).__name__))
                self._hooks[hook_name].append((label, hook))

    def has(self, hook_name: str) -> bool:
        return bool(self._hooks[hook_name])

    async def transform(self, hook_name: str, argument: Any, value: Any) -> Any:
        """Thread ``value`` through every plugin's ``hook_name``; their errors propagate."""
        for _, hook in self._hooks[hook_name]:
            if hook_name == "transform_output":
                argument = dataclasses.replace(argument, output=value)
                value = await resolve(hook(argument))
            else:
                value = await resolve(hook(argument, value))
        return value

    async def call(self, hook_name: str, argument: Any) -> None:
        """Call every plugin's ``hook_name``; failures are logged and ignored.

        Except :class:`~refluxo.errors.TransientError`: a backend that failed for a reason
        that may pass must make the whole delivery retry, not vanish in a hook.
        """
        for label, hook in self._hooks[hook_name]:
            try:
                await resolve(hook(argument))
            except TransientError:
                raise
            except BaseException as err:  # sys.exit() in a hook ends nothing either
                if ends_the_step(err):
                    raise
                # Not logger.exception: the error, or the node error it chains, may hold
                # a secret that the redaction of stored data never sees.
                logger.error(
                    "plugin %r failed in %s; ignored: %s", label, hook_name, where_failed(err)
                )
