"""The transform-engine extension point."""

from __future__ import annotations

from typing import Any

from refluxo.context import Context


class TransformEngine:
    """Rewrites a node's input before validation and execution.

    Engines run in order; each receives the previous one's result (the first gets a deep
    copy of the node's data, so it may modify it in place). ``transform`` may be ``def`` or
    ``async def``. Typical uses: expressions (:class:`refluxo.expressions.JexlTransformEngine`),
    secret injection from ``globals``.

    ``globals`` is optional, as in Refluxo's ``transform(input, context, globals?)``, so an
    engine can be called directly without globals. The workflow engine always passes it
    (``None`` when the run has none), so a subclass that declares it required still runs
    (a type checker flags its narrower signature).
    """

    def transform(self, input: Any, context: Context, globals: Any = None) -> Any:
        """Return the transformed input. The default returns it unchanged."""
        return input
