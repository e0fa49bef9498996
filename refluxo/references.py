"""The node ids a ``{{ }}`` template reads through ``nodes``, found in its syntax tree.

At run time ``nodes.strat`` (a typo of ``start``) is simply absent, as in ``@refluxo/core``:
the expression reads ``undefined`` and the node runs on missing input. Reading the ids off
the parsed expressions lets ``refluxo validate`` and workflow registration name the typo
instead. Only references that can be resolved without running anything are reported:
``nodes.start`` and ``nodes['start']``; a computed key (``nodes[input.step]``) is skipped.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from lark import Token, Tree

from refluxo.expressions.evaluator import unquote
from refluxo.expressions.failures import Failure
from refluxo.expressions.parser import parse
from refluxo.expressions.template import delimited

NODES = "nodes"
"""The variable through which expressions read earlier results by node id."""


@dataclass(frozen=True, slots=True)
class NodeReference:
    """One static read of a node: its id, and how it is written (for messages)."""

    node_id: str
    written: str


def node_references(text: str) -> Iterator[NodeReference]:
    """Every static ``nodes.<id>`` / ``nodes['<id>']`` read in the ``{{ }}`` of ``text``.

    An expression that does not parse is skipped: its syntax error is reported on its own.
    """
    if "{{" not in text:
        return
    for start, end in delimited(text):
        try:
            tree, _ = parse(text[start + 2 : end - 2].strip())
        except Failure:
            continue
        yield from _references(tree)


def _references(tree: Tree[Token]) -> Iterator[NodeReference]:
    """The reads of ``nodes`` in ``tree``, walked with an explicit stack (the parser bounds
    the depth, but no walk here needs to rely on that)."""
    pending = [tree]
    while pending:
        subtree = pending.pop()
        pending.extend(reversed([child for child in subtree.children if isinstance(child, Tree)]))
        if subtree.data not in ("member", "index") or not _is_nodes(subtree.children[0]):
            continue
        key = subtree.children[1]
        if isinstance(key, Token):  # nodes.<name>
            yield NodeReference(str(key), f"{NODES}.{key}")
        elif isinstance(key, Tree) and key.data == "string" and isinstance(key.children[0], Token):
            literal = str(key.children[0])
            yield NodeReference(unquote(literal), f"{NODES}[{literal}]")


def _is_nodes(operand: object) -> bool:
    return (
        isinstance(operand, Tree)
        and operand.data == "identifier"
        and str(operand.children[0]) == NODES
    )
