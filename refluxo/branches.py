"""Branch handles: the words that link an executor's choice to an edge, and their typos.

An executor picks a branch by returning a handle (``next_handle="approved"``); the engine
follows the edge with that ``sourceHandle``, and when none matches the run completes. So an
edge labelled ``"aproved"`` is never taken and nothing fails: an approved order ends
``completed`` without the steps after it. A node type that declares its handles
(``metadata["handles"]``, ``@app.node(handles=[...])``) lets both sides be checked: edges
when a workflow is validated or registered, returned handles at run time. The messages
here are shared by both so that they name the same choices the same way.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any

from refluxo.errors import WorkflowDefinitionError
from refluxo.model import Edge


def declared_handles(metadata: Any) -> tuple[str, ...] | None:
    """The ``"handles"`` declared in a node definition's ``metadata``, in declared order.

    ``None`` when nothing is declared (the metadata is not a mapping, has no ``"handles"``,
    or holds ``None`` there). Raises :class:`WorkflowDefinitionError` when the declaration
    is not a list of strings: a single string would otherwise read as its characters.
    """
    if not isinstance(metadata, Mapping):
        return None
    handles = metadata.get("handles")
    if handles is None:
        return None
    if isinstance(handles, str | bytes) or not isinstance(handles, Iterable):
        raise WorkflowDefinitionError(
            f"metadata['handles'] must be a list of strings, got {type(handles).__name__}"
        )
    declared = tuple(handles)
    for handle in declared:
        if not isinstance(handle, str) or not handle:
            raise WorkflowDefinitionError(
                f"metadata['handles'] must hold non-empty strings, got {handle!r}"
            )
    return tuple(dict.fromkeys(declared))


def nearest(value: str, choices: Iterable[str]) -> str | None:
    """The choice closest to ``value`` (difflib's ratio, at least 0.6), if any."""
    matches = difflib.get_close_matches(value, list(choices), n=1)
    return matches[0] if matches else None


def did_you_mean(suggestion: str | None) -> str:
    """``"; did you mean 'x'?"`` for a suggestion, else nothing."""
    return f"; did you mean {suggestion!r}?" if suggestion is not None else ""


def listed(choices: Iterable[str]) -> str:
    """``'a', 'b'``, or ``none`` for no choice."""
    return ", ".join(repr(choice) for choice in choices) or "none"


def edge_label(edge: Edge) -> str:
    """How messages name an edge: its id when it has one, and always its two ends."""
    ends = f"{edge.source} -> {edge.target}"
    return f"edge {edge.id!r} ({ends})" if edge.id is not None else f"edge {ends}"


def unknown_handle_message(
    edge: Edge, type_name: str, handles: tuple[str, ...], suggestion: str | None
) -> str:
    """Why ``edge``'s ``sourceHandle`` can never be taken."""
    return (
        f"{edge_label(edge)}: node {edge.source!r} (type {type_name!r}) never returns "
        f"handle {edge.source_handle!r}; its handles are {listed(handles)}"
        f"{did_you_mean(suggestion)}"
    )


class UndeclaredHandle(ValueError):
    """An executor returned a handle its node type does not declare."""


def check_handle(type_name: str, handle: Any, handles: tuple[str, ...]) -> None:
    """Raise :class:`UndeclaredHandle` unless ``handle`` is one of ``handles`` (what node
    type ``type_name`` declares; an empty declaration allows none)."""
    if handle not in handles:
        raise UndeclaredHandle(undeclared_handle_message(type_name, handle, handles))


def undeclared_handle_message(type_name: str, handle: str, handles: tuple[str, ...]) -> str:
    """Why a handle returned at run time is refused."""
    return (
        f"node type {type_name!r} returned handle {handle!r}, which it does not declare; "
        f"its handles are {listed(handles)}{did_you_mean(nearest(handle, handles))}"
    )
